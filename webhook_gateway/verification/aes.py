"""AES-256-CBC with PKCS#7 padding, as Feishu and WeCom use it, on `cryptography`."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["DecryptionError", "decrypt_cbc", "encrypt_cbc"]

AES_BLOCK_BYTES = 16


class DecryptionError(Exception):
    """The ciphertext has a wrong length or its padding is invalid."""


def encrypt_cbc(
    key: bytes, iv: bytes, plaintext: bytes, *, pad_block: int = 16
) -> bytes:
    """Pad `plaintext` with PKCS#7 to a multiple of `pad_block` bytes and encrypt it."""
    padder = padding.PKCS7(pad_block * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def decrypt_cbc(
    key: bytes, iv: bytes, ciphertext: bytes, *, pad_block: int = 16
) -> bytes:
    """Decrypt and remove PKCS#7 padding made for `pad_block`-byte blocks.

    Raises:
        DecryptionError: The length is not a whole number of blocks, or the padding
            is invalid (a wrong key usually shows up here).
    """
    if not ciphertext or len(ciphertext) % AES_BLOCK_BYTES:
        raise DecryptionError(
            f"ciphertext of {len(ciphertext)} bytes is not a whole number of "
            f"{AES_BLOCK_BYTES}-byte AES blocks"
        )
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(pad_block * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError("the PKCS#7 padding is invalid") from None
