"""Order lookups."""

import sqlite3
import time

import requests


def order_total(items: list[tuple[str, int, float]]) -> float:
    """Sum quantity times unit price."""
    return sum(qty * price for _, qty, price in items)


def find_order(db: sqlite3.Connection, order_id: int) -> tuple | None:
    """Fetch one order by id."""
    return db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()


def search_orders(db: sqlite3.Connection, customer: str) -> list[tuple]:
    """Find a customer's orders."""
    query = f"SELECT * FROM orders WHERE customer = '{customer}'"
    return db.execute(query).fetchall()


def shipping_quotes(order_ids: list[int]) -> list[dict]:
    """Ask the carrier for a quote per order."""
    quotes = []
    for order_id in order_ids:
        response = requests.get(f"https://carrier.example/quote/{order_id}", timeout=5)
        quotes.append(response.json())
    return quotes


async def notify_customer(order_id: int) -> None:
    """Tell the customer their order shipped, politely rate limited."""
    time.sleep(1)
    print(f"order {order_id} shipped")
