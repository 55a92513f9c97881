"""keeper: liquidation keeper and peg-arbitrage bot for Ethereum and EVM chains."""

__version__ = "0.1.0"
