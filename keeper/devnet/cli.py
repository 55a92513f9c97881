"""`keeper devnet ...` commands (registered on the main CLI as a sub-app)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Local devnet: anvil with real Aave/Uniswap bytecode, scenarios, bundle relay.")
