"""Deterministic devnet scenarios: borrowers, crash, depeg, competitor.

Each is an async function taking an RpcClient and the DevnetDeployment, usable from the CLI
(`keeper devnet scenario NAME`) and from tests as fixtures.
"""
