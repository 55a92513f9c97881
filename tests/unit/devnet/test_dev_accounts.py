from eth_account import Account

from keeper.devnet.anvil import DEFAULT_MNEMONIC, DEV_ACCOUNTS


def test_dev_accounts_match_the_mnemonic() -> None:
    Account.enable_unaudited_hdwallet_features()
    assert len(DEV_ACCOUNTS) == 10
    for i, (address, key) in enumerate(DEV_ACCOUNTS):
        derived = Account.from_mnemonic(DEFAULT_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        assert derived.address == address
        assert "0x" + derived.key.hex() == key
