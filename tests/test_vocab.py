"""dlcli.data.vocab: the tokenizer and the vocabulary every text source shares."""

import numpy as np
import pytest

from dlcli.data.vocab import PAD, PAD_ID, UNK, UNK_ID, Vocabulary, detokenize, tokenize
from dlcli.errors import UserError

TEXT = "The Time Traveller (for so it will be convenient to speak of him) was expounding\na recondite matter to us. Don't ask — «why»?"


def test_char_tokens_round_trip_exactly():
    pieces = tokenize(TEXT, "char")
    vocab = Vocabulary.build(pieces)
    ids = vocab.encode(pieces)
    assert ids.dtype == np.int64 and len(ids) == len(TEXT)
    assert detokenize(vocab.decode(ids), "char") == TEXT
    assert PAD_ID not in ids and UNK_ID not in ids


def test_word_tokens_are_words_and_single_punctuation_marks():
    assert tokenize("Don't stop, 2 ways__ok!! «x»", "word") == ["Don't", "stop", ",", "2", "ways__ok", "!", "!", "«", "x", "»"]
    assert tokenize("  \n\t ", "word") == []
    assert detokenize(["it", "was", "late", ",", "he", "said", "."], "word") == "it was late, he said."


def test_unknown_tokenizer_is_refused_in_one_line():
    with pytest.raises(UserError, match="tokens='bpe' is not a tokenizer: use one of char, word"):
        tokenize("abc", "bpe")


def test_ids_run_from_the_most_frequent_with_ties_in_order_of_first_appearance():
    vocab = Vocabulary.build(list("abcbcc d"))
    assert vocab.tokens == [PAD, UNK, "c", "b", "a", " ", "d"]
    assert Vocabulary.build(list("abcbcc d")) == vocab  # the same text, the same ids


def test_the_size_cap_counts_pad_and_unk_and_the_rest_becomes_unk():
    vocab = Vocabulary.build(list("aaabbc"), max_size=4)
    assert len(vocab) == 4 and vocab.tokens == [PAD, UNK, "a", "b"]
    assert vocab.encode(list("abcz")).tolist() == [2, 3, UNK_ID, UNK_ID]
    assert vocab.decode([2, 1, 3]) == ["a", UNK, "b"]
    assert vocab.unknown(list("abczc")) == ["c", "z"]
    with pytest.raises(UserError, match="vocabulary size of 2 leaves no room"):
        Vocabulary.build(list("abc"), max_size=2)


def test_the_reserved_tokens_are_never_counted_twice():
    assert Vocabulary.build([PAD, "x", UNK, "x"]).tokens == [PAD, UNK, "x"]


def test_decode_refuses_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        Vocabulary.build(["x"]).decode([0, 3])


def test_json_round_trip():
    vocab = Vocabulary.build(tokenize(TEXT, "word"), max_size=10)
    assert Vocabulary.from_json(vocab.to_json()) == vocab


@pytest.mark.parametrize("record, why", [
    ([PAD, UNK], "an object holding only a list"),
    ({"tokens": [PAD, UNK], "code": "x"}, "an object holding only a list"),
    ({"tokens": "abc"}, "list of 2 to"),
    ({"tokens": [PAD]}, "list of 2 to"),
    ({"tokens": [UNK, PAD, "a"]}, "first two tokens"),
    ({"tokens": [PAD, UNK, 3]}, "non-empty string"),
    ({"tokens": [PAD, UNK, ""]}, "non-empty string"),
    ({"tokens": [PAD, UNK, "a", "a"]}, "listed twice"),
])
def test_a_malformed_record_is_refused_in_one_line(record, why):
    with pytest.raises(UserError, match=why) as caught:
        Vocabulary.from_json(record)
    assert "\n" not in str(caught.value) and "vocabulary is not one dl wrote" in str(caught.value)
