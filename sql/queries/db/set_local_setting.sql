-- A setting (planner or custom) that ends with the current transaction.
SELECT set_config(:name, :value, true)
