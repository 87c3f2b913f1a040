"""Analyses over emovec stores (pure functions on xarray + dask)."""
