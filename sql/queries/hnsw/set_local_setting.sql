-- A planner setting that ends with the current transaction.
SELECT set_config(:name, :value, true)
