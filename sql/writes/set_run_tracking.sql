-- Attach the MLflow run and export path to a selection run.
UPDATE selection_runs SET mlflow_run_id = $mlflow_run_id, export_path = $export_path
WHERE run_id = $run_id;
