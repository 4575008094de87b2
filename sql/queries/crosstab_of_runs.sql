-- How the rows of two runs ended, one against the other, largest first.
SELECT ended_a, ended_b, n FROM reason_crosstab WHERE run_a = $run_a AND run_b = $run_b
ORDER BY n DESC, ended_a, ended_b;
