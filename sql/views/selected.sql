-- The selected samples of every run, with their scores and content.
CREATE OR REPLACE VIEW selected AS
SELECT d.run_id, d.sample_id, d.stage AS admitted_by, d.reason, d.acc_mm, d.acc_text, d.d,
       d.psi, d.difficulty, s.question, s.answer, s.image_paths
FROM decisions d JOIN samples s USING (sample_id)
WHERE d.state = 'selected';
