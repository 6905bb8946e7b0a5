"""The built-in phases, one module or subpackage per family; each registers its phases in the
catalog (`workloads.catalog.BUILTIN_MODULES` lists them)."""
