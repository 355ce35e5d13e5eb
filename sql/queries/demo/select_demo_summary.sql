SELECT
    (SELECT count(*) FROM source_documents)                                   AS documents,
    (SELECT count(*) FROM document_chunks)                                    AS chunks,
    (SELECT count(*) FROM active_chunk_embeddings)                            AS embeddings,
    (SELECT name FROM embedding_models WHERE status = 'active')               AS active_model,
    (SELECT count(*) FROM embedding_errors)                                   AS embedding_errors,
    (SELECT count(*) FROM ai_dialogue_log)                                    AS dialogue_rows,
    (SELECT count(*) FROM rag_metrics_history)                                AS metrics_days,
    (SELECT count(*) FROM rag_metrics_history
      WHERE (slo_compliance ->> 'overallMet')::boolean)                       AS days_meeting_slo,
    (SELECT min(date) FROM rag_metrics_history)                               AS first_day,
    (SELECT max(date) FROM rag_metrics_history)                               AS last_day
