"""`ragload bench --profile faults`: scenarios that break parts of the queued system on a timeline while an
open-loop submitter keeps every accepted job id, then an audit of what became of each job."""
