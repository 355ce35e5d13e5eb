UPDATE embedding_batches
SET status = :status, output_file_id = :output_file_id, error_file_id = :error_file_id,
    error = coalesce(:error, error), polls = polls + 1,
    next_poll_at = now() + make_interval(secs => :delay_s), updated_at = now()
WHERE id = :id AND applied_at IS NULL
