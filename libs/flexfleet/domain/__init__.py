"""Vehicles, owners, chargers, sites, contracts and the MTU time grid."""
