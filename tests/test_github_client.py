"""The App's client: its private key is loaded once, and a bad key is a clear error."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.github.client import app_client


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def test_the_app_key_is_parsed_once_for_every_client() -> None:
    # A PEM text would be parsed and checked again for every JWT (~60 ms of CPU each).
    pem = _pem()
    first = app_client("1", pem, "http://127.0.0.1:9")
    second = app_client("1", pem, "http://127.0.0.1:9")
    assert isinstance(first.auth.private_key, rsa.RSAPrivateKey)
    assert second.auth.private_key is first.auth.private_key


@pytest.mark.parametrize("text", ["not a key", "", _pem()[:300]])
def test_a_key_that_does_not_load_is_a_value_error_without_its_text(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        app_client("1", text, "http://127.0.0.1:9")
    assert str(caught.value) == "not an unencrypted PEM private key"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
