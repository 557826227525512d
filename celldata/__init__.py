"""The input contract: reading, validation, bundled real cells and the simulated atlas."""
