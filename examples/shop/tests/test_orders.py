from shop.orders import order_total


def test_order_total() -> None:
    assert order_total([("pen", 2, 1.5)]) == 3.0
