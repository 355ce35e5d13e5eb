-- Chunks of the current corpus that have neither a vector of their current text for :model nor a
-- recorded failure for it: chunks written by a run beside this one after it read what to embed.
-- (`chunks_to_embed` with max_attempts 0 leaves out every chunk with a failure recorded for its text.)
SELECT count(*)
FROM chunks_to_embed(:model, 0) c
