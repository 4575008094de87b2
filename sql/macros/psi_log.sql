-- ACE psi in the log domain from stored column sums: max_j (n_j * ln(sigma) + S_j) over columns
-- whose run n_j = L - j + 1 has at least min_run rows; NULL when none has.
CREATE OR REPLACE MACRO psi_log(sums, sigma, min_run) AS
list_max([(len(sums) - j + 1) * ln(sigma) + sums[j]
          FOR j IN range(1, len(sums) + 1) IF len(sums) - j + 1 >= min_run]);
