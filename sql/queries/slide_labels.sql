-- One slide's labels from a rule file's nucleus_cell_type, class names as text (pipelines/
-- labels.py adds the slide and its threshold version, both constants).
SELECT nucleus_id, cell_type::VARCHAR AS cell_type, excluded_at_step
FROM nucleus_cell_type
ORDER BY nucleus_id;
