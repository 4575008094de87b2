-- Record where a run's selection was exported (also when it is not tracked in MLflow).
UPDATE selection_runs SET export_path = $export_path WHERE run_id = $run_id;
