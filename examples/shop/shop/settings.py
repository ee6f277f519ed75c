"""Settings read from the environment."""

import os

DATABASE = os.environ.get("SHOP_DATABASE", "shop.db")
AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
