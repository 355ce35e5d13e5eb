-- For the rest of the session (the index build's own autocommit connection), until reset after the build.
SELECT set_config('maintenance_work_mem', :value, false)
