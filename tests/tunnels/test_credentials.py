import pytest
from cryptography.fernet import Fernet

from ovmweb.tunnels.credentials import CredentialsUnreadable, decrypt_credentials, encrypt_credentials


def test_round_trip_and_token_hides_secret(settings):
    settings.OVMWEB_CREDENTIALS_KEY = ""
    token = encrypt_credentials({"password": "s3cret-pw"})
    assert "s3cret" not in token
    assert decrypt_credentials(token) == {"password": "s3cret-pw"}


def test_derived_key_depends_on_secret_key(settings):
    settings.OVMWEB_CREDENTIALS_KEY = ""
    token = encrypt_credentials({"private_key": "KEY"})
    settings.SECRET_KEY = settings.SECRET_KEY + "-rotated"
    with pytest.raises(CredentialsUnreadable) as info:
        decrypt_credentials(token)
    assert token not in str(info.value)


def test_explicit_key_is_used(settings):
    key = Fernet.generate_key().decode()
    settings.OVMWEB_CREDENTIALS_KEY = key
    token = encrypt_credentials({"password": "x"})
    assert Fernet(key).decrypt(token.encode()) == b'{"password":"x"}'


def test_empty_token_means_no_credentials():
    assert decrypt_credentials("") == {}
