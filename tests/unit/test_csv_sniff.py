"""CSV files are read as people save them: comma, semicolon or tab; UTF-8 (with or without BOM) or Latin-1."""

from __future__ import annotations

import csv
import io

import pytest

from builder.datasets import read_csv_bytes, sniff_csv
from builder.errors import DataError

SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "cp1252": "Latin-1"}
ROWS = [
    ["question", "answer"],
    ["Où est ma commande ?", "Suivez-la sous Compte > Commandes, ça coûte 5 €."],
    ["Can I pay later, or in parts; by card\tor cash?", "Yes: in 3 parts, by card; no cash."],
    ["Grüße!", "Hallo"],
]


def encode(rows: list[list[str]], separator: str, encoding: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=separator, lineterminator="\r\n").writerows(rows)  # what Excel writes
    return out.getvalue().encode(encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("separator", SEPARATORS)
def test_every_separator_and_encoding_is_detected_and_read_exactly(separator, encoding):
    data = encode(ROWS, separator, encoding)
    table = read_csv_bytes(data, "faq.csv")
    assert table.format.description == f"{SEPARATORS[separator]}-separated, {ENCODINGS[encoding]}"
    assert sniff_csv(data) == table.format
    assert table.columns == ["question", "answer"]  # no BOM glued to the first column name
    assert table.rows == ROWS[1:]  # accents, the euro sign and the quoted separators survive


def test_a_semicolon_file_full_of_commas_is_still_semicolon_separated():
    data = b"Question;Answer\nHello, how are you?;Fine, thanks, and you?\nHi, all;Hello, friend\n"
    table = read_csv_bytes(data, "faq.csv")
    assert table.format.separator == ";" and table.rows[0] == ["Hello, how are you?", "Fine, thanks, and you?"]


def test_when_two_separators_split_every_line_alike_the_quoting_decides():
    # Split at commas or at semicolons, every line has two cells; only the quotes show that ";" separates.
    data = b'question;answer, if any\n"Hi; there";Hello, friend\n"Bye; now";See you, friend\n'
    table = read_csv_bytes(data, "faq.csv")
    assert table.format.separator == ";" and table.rows[0] == ["Hi; there", "Hello, friend"]


def test_excel_trailing_separators_and_blank_lines_are_ignored():
    table = read_csv_bytes(b"question;answer;;\r\n\r\nhi;hello;;\r\nhey;;;\r\n;;;\r\n", "faq.csv")
    assert table.columns == ["question", "answer"] and table.rows == [["hi", "hello"], ["hey", ""]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"question|answer\nhi|hello\n", "faq.csv has only one column (its first line is 'question|answer'); "),
        (b"question\nhi\nhey\n", "faq.csv has only one column"),
        (b"question,answer\nhi,hello,again\n", "faq.csv: line 2 has 3 values but the header has 2; put double quotes"),
        (b'question,answer\n"hi,hello\nhey,you\n', "faq.csv: the quote mark opened on line 2 is never closed"),
        (b"question,Question\nhi,hello\n", "faq.csv: the column 'Question' appears twice in the header"),
        (b"\xef\xbb\xbf \r\n", "faq.csv is empty"),
        (b"\xef\xbb\xbfquestion,answer\n\xe9t\xe9,oui\n", "faq.csv is marked as UTF-8 with BOM but is not"),
    ],
)
def test_unreadable_files_are_explained_in_one_sentence(data, message):
    with pytest.raises(DataError) as info:
        read_csv_bytes(data, "faq.csv")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_single_column_file_says_which_separators_work():
    with pytest.raises(DataError, match="separate the columns with commas, semicolons or tabs$"):
        sniff_csv(b"question answer\nhi hello\n", "faq.csv")
