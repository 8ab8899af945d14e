"""The words sample products are made of: a tree of departments, adjectives, materials.

A product is named ``adjective material noun`` ("Rustic Walnut Chair"), its noun taken
from its subcategory; its price is drawn around its department's median.
"""

from __future__ import annotations

#: Departments: (name, median price in dollars, {subcategory: product nouns}).
DEPARTMENTS: tuple[tuple[str, float, dict[str, tuple[str, ...]]], ...] = (
    (
        "Electronics",
        120.0,
        {
            "Audio": ("Headphones", "Speaker", "Earbuds", "Soundbar", "Turntable"),
            "Computers": ("Laptop", "Keyboard", "Mouse", "Monitor", "Docking Station"),
            "Phones": ("Smartphone", "Phone Case", "Charger", "Power Bank"),
            "Cameras": ("Camera", "Lens", "Tripod", "Camera Bag"),
        },
    ),
    (
        "Home & Kitchen",
        40.0,
        {
            "Cookware": ("Skillet", "Saucepan", "Dutch Oven", "Wok", "Baking Sheet"),
            "Furniture": ("Chair", "Table", "Bookshelf", "Desk", "Stool"),
            "Lighting": ("Lamp", "Pendant Light", "Lantern", "Desk Lamp"),
            "Bedding": ("Pillow", "Duvet", "Blanket", "Sheet Set"),
        },
    ),
    (
        "Sports & Outdoors",
        55.0,
        {
            "Camping": ("Tent", "Sleeping Bag", "Backpack", "Camp Stove"),
            "Cycling": ("Bike Helmet", "Bike Light", "Water Bottle", "Saddle"),
            "Fitness": ("Yoga Mat", "Dumbbell", "Kettlebell", "Jump Rope"),
        },
    ),
    (
        "Clothing",
        35.0,
        {
            "Outerwear": ("Jacket", "Raincoat", "Vest", "Parka"),
            "Tops": ("Shirt", "Sweater", "Hoodie", "T-Shirt"),
            "Shoes": ("Sneakers", "Boots", "Sandals", "Loafers"),
        },
    ),
    (
        "Toys & Games",
        25.0,
        {
            "Board Games": ("Board Game", "Card Game", "Chess Set"),
            "Puzzles": ("Jigsaw Puzzle", "Puzzle Cube", "Brain Teaser"),
            "Building Sets": ("Building Set", "Model Kit", "Marble Run"),
        },
    ),
    (
        "Garden",
        30.0,
        {
            "Tools": ("Shovel", "Pruner", "Rake", "Garden Hose", "Wheelbarrow"),
            "Planters": ("Planter", "Raised Bed", "Window Box", "Plant Stand"),
        },
    ),
    (
        "Office",
        20.0,
        {
            "Stationery": ("Notebook", "Pen Set", "Planner", "Desk Organizer"),
            "Storage": ("File Cabinet", "Storage Box", "Shelf Unit"),
        },
    ),
)
#: The first word of a product's name.
ADJECTIVES = (
    "Ergonomic", "Rustic", "Sleek", "Compact", "Durable", "Lightweight", "Classic",
    "Modern", "Handcrafted", "Premium", "Portable", "Vintage", "Essential", "Deluxe",
    "Smart", "Foldable", "Weatherproof", "Minimalist", "Heavy-Duty", "Eco-Friendly",
)  # fmt: skip
#: The second word of a product's name.
MATERIALS = (
    "Steel", "Oak", "Bamboo", "Cotton", "Leather", "Aluminum", "Ceramic", "Glass",
    "Wool", "Walnut", "Granite", "Linen", "Copper", "Carbon", "Silicone", "Canvas",
)  # fmt: skip
