UPDATE embedding_batches
SET batch_id = :batch_id, input_file_id = :input_file_id, status = :status,
    next_poll_at = now() + make_interval(secs => :delay_s), updated_at = now()
WHERE id = :id
