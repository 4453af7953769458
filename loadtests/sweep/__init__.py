"""`ragload bench`: profiles expanded into cells, each cell run with Locust against the stack, sampled and
summarised into a run folder (run_folder.py says what it holds); then its report."""
