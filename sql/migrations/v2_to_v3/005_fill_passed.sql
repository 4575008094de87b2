-- Schema 2 -> 3: passed from passed_cde / passed_ace.
UPDATE decisions SET passed = [s FOR s IN ['cde', 'ace']
                               IF (s = 'cde' AND passed_cde) OR (s = 'ace' AND passed_ace)];
