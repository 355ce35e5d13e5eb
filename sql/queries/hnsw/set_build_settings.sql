-- For the rest of the session (the index build's own autocommit connection), until reset after the build:
-- the build's memory, its parallel workers, and no table-size floor for planning them (the vectors are
-- stored out of line, so the table's own pages understate the work).
SELECT set_config('maintenance_work_mem', :maintenance_work_mem, false),
       set_config('max_parallel_maintenance_workers', :workers, false),
       set_config('min_parallel_table_scan_size', '0', false)
