-- Demo rows of a window, before the demo generator writes that window again; real rows never match
-- the demo session prefix.
DELETE FROM ai_dialogue_log
WHERE created_at >= :window_start
  AND created_at < :window_end
  AND session_id LIKE :session_pattern
