"""The report of a fault run (`ragload bench --profile faults`): its data, verdict, plots and pages."""
