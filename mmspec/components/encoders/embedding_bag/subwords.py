"""fastText's subword ids (Bojanowski et al. 2017): a word -> its own id and the hashed buckets of its character
n-grams, as the ids an `embedding_bag` encoder over a table of `nwords + buckets` rows reads (torch-free).

This is a preprocessing stage, not part of the exported graph: it works on the word's UTF-8 bytes (string
slicing, a 32-bit multiply that wraps), which ONNX has no operators for, and fastText itself computes it on the
CPU before the lookup. The definitions follow fastText's dictionary:

- the word is wrapped in `<` and `>`; its n-grams are the substrings of n = minn..maxn characters (a character
  is a UTF-8 code point), except the lone markers;
- an n-gram's bucket is FNV-1a (32-bit) of its bytes modulo `buckets`, where fastText, reading the bytes as signed
  chars, XORs each byte sign-extended to 32 bits (so bytes >= 0x80 differ from textbook FNV-1a);
- the ids are the word's id (when it is in the vocabulary) followed by `nwords + bucket` for each n-gram.
"""

from __future__ import annotations

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
_MASK = 0xFFFFFFFF


def fnv1a32(data: bytes, signed_bytes: bool = True) -> int:
    """FNV-1a, 32-bit, of `data`; `signed_bytes` sign-extends each byte as fastText does (textbook FNV-1a: False)."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ ((b | 0xFFFFFF00) if signed_bytes and b >= 0x80 else b)) * FNV_PRIME) & _MASK
    return h


def char_ngrams(word: str, minn: int = 3, maxn: int = 6) -> list[bytes]:
    """The n-grams of `<word>`, n = minn..maxn characters, in fastText's order (by start, then length)."""
    data = f"<{word}>".encode()
    out = []
    for i in range(len(data)):
        if data[i] & 0xC0 == 0x80:  # a UTF-8 continuation byte starts no character
            continue
        j, n = i, 0
        while j < len(data) and n < maxn:
            j += 1
            while j < len(data) and data[j] & 0xC0 == 0x80:
                j += 1
            n += 1
            if n >= minn and not (n == 1 and (i == 0 or j == len(data))):
                out.append(data[i:j])
    return out


def subword_ids(word: str, word_id: int | None, nwords: int, buckets: int = 2_000_000, minn: int = 3,
                maxn: int = 6) -> list[int]:
    """Ids of `word` in a table of `nwords + buckets` rows: its own id (None: out of vocabulary, n-grams only),
    then nwords + fnv1a32(n-gram) % buckets per n-gram. fastText's word vector is the mean of these rows."""
    ids = [] if word_id is None else [word_id]
    return ids + [nwords + fnv1a32(g) % buckets for g in char_ngrams(word, minn, maxn)]
