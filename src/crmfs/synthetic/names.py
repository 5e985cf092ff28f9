"""Small hand-written word lists for the synthetic CRM generator.

Everything here is invented for this project. The lists are deliberately small: repeated names
across different people (two "Robert Smith"s in one city) are part of what makes identity
resolution hard, so a short list is a feature, not a limitation.
"""

from __future__ import annotations

from typing import Final

# Canonical first name -> nicknames people go by. Nicknames are the main source of "same person,
# different first name" noise, so the common English ones with several forms are included.
FIRST_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "Robert": ("Bob", "Rob", "Bobby"),
    "William": ("Bill", "Will", "Liam"),
    "Elizabeth": ("Liz", "Beth", "Eliza"),
    "Katherine": ("Kate", "Kathy", "Katie"),
    "Michael": ("Mike", "Mikey"),
    "James": ("Jim", "Jimmy"),
    "Richard": ("Rick", "Rich"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Jennifer": ("Jen", "Jenny"),
    "Christopher": ("Chris",),
    "Alexander": ("Alex", "Sasha"),
    "Alexandra": ("Alex", "Lexi"),
    "Daniel": ("Dan", "Danny"),
    "Joseph": ("Joe", "Joey"),
    "Thomas": ("Tom", "Tommy"),
    "Patricia": ("Pat", "Trish"),
    "Samantha": ("Sam",),
    "Samuel": ("Sam",),
    "Benjamin": ("Ben",),
    "Nicholas": ("Nick",),
    "Anthony": ("Tony",),
    "Edward": ("Ed", "Ted", "Eddie"),
    "Jonathan": ("Jon",),
    "Matthew": ("Matt",),
    "Andrew": ("Andy", "Drew"),
    "Rebecca": ("Becky", "Becca"),
    "Victoria": ("Vicky", "Tori"),
    "Susan": ("Sue", "Susie"),
    "Deborah": ("Deb", "Debbie"),
    "Theodore": ("Theo", "Ted"),
    "Charles": ("Charlie", "Chuck"),
    "Stephanie": ("Steph",),
    "Gregory": ("Greg",),
    "Timothy": ("Tim",),
    "Abigail": ("Abby",),
    "Jessica": ("Jess",),
    "Kimberly": ("Kim",),
    "Frederick": ("Fred", "Freddie"),
    # Names without a common nickname; some carry accents so normalisation gets exercised.
    "Olivia": (),
    "Emma": (),
    "Noah": (),
    "Sofia": (),
    "Mateo": (),
    "Priya": (),
    "Wei": (),
    "Aisha": (),
    "José": (),
    "Zoë": (),
    "Renée": (),
    "Chloé": (),
    "Søren": (),
    "Björn": (),
    "Ana": (),
    "Lucas": (),
    "Hannah": (),
    "Omar": (),
    "Yuki": (),
    "Fatima": (),
    "Diego": (),
    "Ingrid": (),
    "Kwame": (),
    "Mei": (),
    "Ravi": (),
    "Leila": (),
    "Nora": (),
    "Hugo": (),
}

SURNAMES: Final[tuple[str, ...]] = (
    "Smith", "Johnson", "Garcia", "Nguyen", "Müller", "O'Brien", "Kowalski", "Patel", "Kim",
    "Rossi", "Dubois", "Okafor", "Andersson", "Silva", "Haddad", "Tanaka", "Schmidt", "Martinez",
    "Brown", "Lee", "Walker", "Hughes", "Fischer", "Novak", "Santos", "Chen", "Wright", "Baker",
    "Murphy", "Kelly", "Cohen", "Jensen", "Larsen", "Moreau", "Bianchi", "Costa", "Mendes",
    "Rahman", "Khan", "Singh", "Das", "Ito", "Sato", "Park", "Choi", "Hoffmann", "Weber",
    "Becker", "Wagner", "Bauer", "Richter", "Klein", "Wolf", "Lambert", "Fontaine", "Romero",
    "Ortiz", "Vargas", "Castillo", "Reyes", "Flores", "Rivera", "Torres", "Ramirez", "Adams",
    "Campbell", "Parker", "Evans", "Edwards", "Collins", "Stewart", "Morris", "Rogers", "Reed",
    "Cook", "Morgan", "Bell", "Cooper", "Howard", "Ward", "Peterson", "Gray", "McAllister",
    "García-López", "van der Berg", "De Luca", "St. Clair", "Fitzgerald", "Okonkwo", "Yilmaz",
)  # fmt: skip

# (city, telephone area code, abbreviation some users type instead). Phone numbers take their
# area code from the person's city so a household shares both.
CITIES: Final[tuple[tuple[str, str, str], ...]] = (
    ("San Francisco", "415", "SF"),
    ("Oakland", "510", "Oakland"),
    ("New York", "212", "NYC"),
    ("Brooklyn", "718", "Bklyn"),
    ("Chicago", "312", "Chi"),
    ("Austin", "512", "Austin"),
    ("Seattle", "206", "Seattle"),
    ("Boston", "617", "Boston"),
    ("Denver", "303", "Denver"),
    ("Atlanta", "404", "ATL"),
    ("Miami", "305", "Miami"),
    ("Portland", "503", "PDX"),
    ("Phoenix", "602", "Phoenix"),
    ("Minneapolis", "612", "Mpls"),
    ("Philadelphia", "215", "Philly"),
    ("San Diego", "619", "SD"),
    ("Los Angeles", "213", "LA"),
    ("Dallas", "214", "Dallas"),
    ("Houston", "713", "Houston"),
    ("Nashville", "615", "Nashville"),
    ("Pittsburgh", "412", "Pgh"),
    ("Salt Lake City", "801", "SLC"),
    ("Raleigh", "919", "Raleigh"),
    ("Detroit", "313", "Detroit"),
)

# Invented consumer mail providers for personal addresses.
FREEMAIL_DOMAINS: Final[tuple[str, ...]] = (
    "mailnest.com",
    "postbox.net",
    "inboxly.com",
    "letterpost.org",
    "quickmail.io",
)

# Role mailboxes shared by everyone at a company ("info@acme.com"): one of these per account
# that uses one, so the same address ends up on several different people's records. "info" is
# listed three times because it is by far the most common one.
ROLE_LOCALS: Final[tuple[str, ...]] = ("info", "info", "info", "sales", "contact", "office")

COMPANY_PREFIXES: Final[tuple[str, ...]] = (
    "Blue", "North", "Granite", "Summit", "Cedar", "Harbor", "Silver", "Red", "Bright", "Iron",
    "Maple", "Pioneer", "Quantum", "Atlas", "Evergreen", "Falcon", "Golden", "Horizon",
    "Juniper", "Keystone", "Lumen", "Meridian", "Nimbus", "Orchid", "Polar", "Redwood", "Sierra",
    "Tidal", "Union", "Vertex", "Willow", "Zenith", "Copper", "Beacon", "Crescent", "Delta",
    "Echo", "Frontier", "Lakeside", "Oak",
)  # fmt: skip

# Company name core -> industry, so the industry column agrees with the name.
COMPANY_CORES: Final[dict[str, str]] = {
    "Analytics": "Technology",
    "Software": "Technology",
    "Systems": "Technology",
    "Networks": "Telecommunications",
    "Robotics": "Manufacturing",
    "Manufacturing": "Manufacturing",
    "Dynamics": "Manufacturing",
    "Logistics": "Transportation",
    "Freight": "Transportation",
    "Travel": "Hospitality",
    "Foods": "Food & Beverage",
    "Health": "Healthcare",
    "Bio": "Healthcare",
    "Labs": "Research",
    "Media": "Media",
    "Studios": "Media",
    "Energy": "Energy",
    "Capital": "Financial Services",
    "Partners": "Professional Services",
    "Consulting": "Professional Services",
    "Design": "Professional Services",
    "Security": "Technology",
    "Supply": "Wholesale",
    "Outfitters": "Retail",
    "Retail": "Retail",
}

# Appended when the prefix x core grid runs out at large scales.
COMPANY_WRAP_SUFFIXES: Final[tuple[str, ...]] = ("", " Group", " Holdings", " Works", " Co")
LEGAL_FORMS: Final[tuple[str, ...]] = ("Inc", "Inc.", "LLC", "Corp", "Ltd")
COMPANY_TLDS: Final[tuple[str, ...]] = (".com", ".com", ".com", ".io", ".co")

# Product catalogue: category -> (nouns, typical price in USD). Prices are drawn around the
# typical price so categories differ in basket value, which purchase features should pick up.
PRODUCT_CATEGORIES: Final[dict[str, tuple[tuple[str, ...], float]]] = {
    "Electronics": (("Headphones", "Speaker", "Charger", "Tablet", "Camera", "Smartwatch"), 120.0),
    "Home & Kitchen": (("Blender", "Kettle", "Skillet", "Knife Set", "Toaster", "Lamp"), 45.0),
    "Books": (("Cookbook", "Novel", "Field Guide", "Atlas", "Workbook", "Biography"), 18.0),
    "Outdoor": (("Tent", "Backpack", "Sleeping Bag", "Headlamp", "Cooler", "Hammock"), 80.0),
    "Beauty": (("Serum", "Face Cream", "Shampoo", "Lip Balm", "Sunscreen", "Perfume"), 25.0),
    "Toys": (("Puzzle", "Board Game", "Building Set", "Plush Bear", "Kite", "Train Set"), 30.0),
    "Fashion": (("Sneakers", "Jacket", "Scarf", "Sunglasses", "Wallet", "Hoodie"), 60.0),
    "Sports": (("Yoga Mat", "Dumbbells", "Tennis Racket", "Bike Helmet", "Jump Rope"), 40.0),
    "Grocery": (("Coffee Beans", "Olive Oil", "Green Tea", "Granola", "Hot Sauce", "Honey"), 12.0),
    "Office": (("Notebook", "Desk Organizer", "Fountain Pen", "Monitor Stand", "Planner"), 22.0),
}

PRODUCT_ADJECTIVES: Final[tuple[str, ...]] = (
    "Classic", "Pro", "Compact", "Deluxe", "Eco", "Smart", "Ultra", "Mini", "Premium",
    "Everyday", "Vintage", "Lite", "Trail", "Urban", "Nordic", "Studio",
)  # fmt: skip

PRODUCT_COLORS: Final[tuple[str, ...]] = (
    "Black", "White", "Navy", "Sage", "Coral", "Graphite", "Sand", "Crimson",
)  # fmt: skip
