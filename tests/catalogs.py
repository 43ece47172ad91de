"""A catalog from another field, built in the tests (not the shipped one): a public
library's desk, nine functions over every argument type the format has."""

from __future__ import annotations

from pathlib import Path

import yaml


def _fn(name: str, description: str, props: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": required}}}


LIBRARY = [
    _fn("find_book", "Search the catalogue for a book", {
        "title": {"type": "string"}, "author": {"type": "string"}}, ["title"]),
    _fn("renew_loan", "Renew a loan by its number", {
        "loan_id": {"type": "integer"}, "weeks": {"type": "integer"}}, ["loan_id"]),
    _fn("reserve_room", "Reserve a study room", {
        "room": {"type": "string", "enum": ["quiet", "group", "media_lab"]},
        "date": {"type": "string", "format": "date"}, "start": {"type": "string", "format": "time"},
        "hours": {"type": "integer"}}, ["room", "date", "start"]),
    _fn("pay_fine", "Pay a fine", {
        "amount": {"type": "number"},
        "method": {"type": "string", "enum": ["card", "cash", "voucher"], "x-words": {"card": ["credit card"]}}},
        ["amount", "method"]),
    _fn("register_member", "Sign up a new member", {
        "name": {"type": "string"}, "student": {"type": "boolean", "x-words": ["student", "at university"]}},
        ["name"]),
    _fn("cancel_reservation", "Cancel a room reservation", {"reservation_id": {"type": "integer"}},
        ["reservation_id"]),
    _fn("list_new_arrivals", "New books in a genre", {
        "genre": {"type": "string", "enum": ["fiction", "history", "science", "poetry"]},
        "limit": {"type": "integer"}}, ["genre"]),
    _fn("ask_librarian", "Send a question to a librarian", {
        "question": {"type": "string"}, "urgent": {"type": "boolean"}}, ["question"]),
    _fn("extend_membership", "Extend a membership by some months", {"months": {"type": "integer"}}, ["months"]),
]


def write_library(folder: Path, name: str = "library.yaml", tools: list | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(LIBRARY if tools is None else tools, sort_keys=False))
    return path
