"""Lending protocols behind one interface (`LendingProtocol`), one module per protocol."""
