-- Length-normalised psi (log domain): max_j of the mean of log(sigma * A[i, j]) over the run.
CREATE OR REPLACE MACRO psi_norm_log(sums, sigma, min_run) AS
list_max([sums[j] / (len(sums) - j + 1) + ln(sigma)
          FOR j IN range(1, len(sums) + 1) IF len(sums) - j + 1 >= min_run]);
