"""A JSON API in Python's standard library: POST a list of items, get totals back.

    curl -s localhost:8080/fn/inventory -d '{"items": [{"name": "bolt", "price": 0.25, "qty": 40}]}'

It answers as CGI (Status and Content-Type first), so a bad request is a 400 with a JSON error.
An in-memory SQLite database does the arithmetic, to show the standard library's C modules work.
"""
import json
import os
import sqlite3
import sys


def respond(status, body):
    sys.stdout.write(f"Status: {status}\r\nContent-Type: application/json\r\n\r\n")
    sys.stdout.write(json.dumps(body) + "\n")


def main():
    if os.environ.get("REQUEST_METHOD") not in ("POST", "PUT"):
        return respond("405 Method Not Allowed", {"error": "POST a JSON object with an 'items' list"})
    try:
        items = json.load(sys.stdin)["items"]
        rows = [(str(i["name"]), float(i.get("price", 0)), int(i.get("qty", 1))) for i in items]
    except (ValueError, KeyError, TypeError) as error:
        return respond("400 Bad Request", {"error": f"expected {{'items': [{{'name', 'price', 'qty'}}]}}: {error}"})
    db = sqlite3.connect(":memory:")
    db.execute("create table item (name text, price real, qty integer)")
    db.executemany("insert into item values (?, ?, ?)", rows)
    count, units, total = db.execute("select count(*), coalesce(sum(qty), 0), coalesce(sum(price * qty), 0) from item").fetchone()
    priciest = db.execute("select name from item order by price desc limit 1").fetchone()
    respond("200 OK", {
        "items": count,
        "units": units,
        "total": round(total, 2),
        "priciest": priciest[0] if priciest else None,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    })


main()
