"""Definitions of the demo project over the synthetic CRM (written as its definitions.py)."""

DEFINITIONS = """\
\"\"\"Demo features over the synthetic CRM (crmfs generate).\"\"\"

from crmfs import (
    Aggregation, Entity, EventSource, Fallback, FeatureService, FeatureView, Latest, Relation,
    col,
)

customer = Entity("customer", join_key="customer_id", description="A CRM contact (crm_a id)")
person = Entity(
    "person", join_key="golden_id", identity=True,
    description="One real person across CRM, leads, newsletter and support (a golden id)",
)
account = Entity("account", join_key="account_id", description="A company in the CRM")

crm_a_contacts = EventSource(
    "crm_a_contacts",
    schema={
        "event_id": "string", "updated_at": "timestamp", "contact_id": "string",
        "account_id": "string", "first_name": "string", "last_name": "string",
        "email": "string", "phone": "string", "city": "string",
    },
    event_id="event_id", event_time="updated_at", owner="sales-ops", sensitivity="personal",
    identifiers={
        "contact_id": "crm_contact_id", "account_id": "account_id", "email": "email",
        "phone": "phone", "first_name": "first_name", "last_name": "last_name", "city": "city",
    },
)
crm_b_leads = EventSource(
    "crm_b_leads",
    schema={
        "event_id": "string", "created_at": "timestamp", "lead_id": "string",
        "first_name": "string", "last_name": "string", "email": "string", "phone": "string",
        "company": "string",
    },
    event_id="event_id", event_time="created_at", owner="sales-ops", sensitivity="personal",
    identifiers={
        "lead_id": "external_id", "email": "email", "phone": "phone",
        "first_name": "first_name", "last_name": "last_name", "company": "company",
    },
)
marketing_contacts = EventSource(
    "marketing_contacts",
    schema={
        "event_id": "string", "subscribed_at": "timestamp", "subscriber_id": "string",
        "email": "string", "first_name": "string",
    },
    event_id="event_id", event_time="subscribed_at", owner="marketing-team",
    sensitivity="personal",
    identifiers={"subscriber_id": "marketing_lead_id", "email": "email", "first_name": "first_name"},
)

web_events = EventSource(
    "web_events",
    schema={
        "event_id": "string", "event_time": "timestamp", "arrival_time": "timestamp",
        "cookie_id": "string", "customer_id": "string", "page": "string",
        "item_id": "string", "event_type": "string",
    },
    event_id="event_id", event_time="event_time", owner="web-team",
)
purchases = EventSource(
    "purchases",
    schema={
        "event_id": "string", "event_time": "timestamp", "arrival_time": "timestamp",
        "customer_id": "string", "order_id": "string", "item_id": "string",
        "quantity": "int", "amount": "float", "currency": "string",
    },
    event_id="event_id", event_time="event_time", required=("customer_id", "amount"),
    owner="commerce-team", sensitivity="confidential",
)
email_events = EventSource(
    "email_events",
    schema={
        "event_id": "string", "event_time": "timestamp", "arrival_time": "timestamp",
        "email": "string", "campaign_id": "string", "event_type": "string",
    },
    event_id="event_id", event_time="event_time", owner="marketing-team", sensitivity="personal",
    identifiers={"email": "email"},
)
support_tickets = EventSource(
    "support_tickets",
    schema={
        "event_id": "string", "event_time": "timestamp", "arrival_time": "timestamp",
        "email": "string", "ticket_id": "string", "priority": "string", "status": "string",
        "csat": "int",
    },
    event_id="event_id", event_time="event_time", owner="support-team",
    identifiers={"email": "email"},
)

browsing = FeatureView(
    "browsing", entity=customer, source=web_events,
    features=[
        Aggregation("visits", "count", windows=["1h", "7d", "30d"]),
        Aggregation("viewed_items", "last_n", field="item_id", n=10, windows=["30d"]),
        Aggregation("distinct_items", "count_distinct", field="item_id", windows=["7d", "30d"]),
        Latest("last_page", field="page"),
    ],
    ttl="90d", freshness_sla="1h", owner="recsys", description="Web browsing of known customers",
)
buying = FeatureView(
    "buying", entity=customer, source=purchases,
    features=[
        Aggregation("orders", "count", windows=["30d", "90d"]),
        Aggregation("spend", "sum", field="amount", windows=["30d", "90d"]),
        Aggregation("order_value", "mean", field="amount", windows=["90d"]),
        Aggregation("largest_order", "max", field="amount", windows=["90d"]),
        Aggregation("last_item", "last", field="item_id", windows=["90d"]),
        Latest("currency", field="currency"),
    ],
    ttl="90d", freshness_sla="1d", owner="recsys", sensitivity="confidential",
    # What serves a value that is missing (no orders in the window) or stale (SLA passed).
    fallback={
        "order_value_90d": [Fallback.default(0.0)],
        "currency": [Fallback.default("EUR")],
    },
)
email_engagement = FeatureView(
    "email_engagement", entity=person, source=email_events,
    features=[
        Aggregation("opens", "count", windows=["7d", "30d"]),
        Aggregation("campaigns", "count_distinct", field="campaign_id", windows=["30d"]),
    ],
    filter=col("event_type").isin(["open", "click"]), freshness_sla="1h", owner="marketing",
)
support = FeatureView(
    "support", entity=person, source=support_tickets,
    features=[
        Aggregation("tickets", "count", windows=["30d"]),
        Aggregation("csat", "mean", field="csat", windows=["90d"]),
        Latest("ticket_status", field="status"),
    ],
    ttl="90d", freshness_sla="1d", owner="support",
)

works_at = Relation(
    "works_at", child=person, parent=account, source=crm_a_contacts, parent_field="account_id",
)
account_engagement = FeatureView(
    "account_engagement", entity=account, source=email_events, via=works_at,
    features=[
        Aggregation("opens", "count", windows=["7d", "30d"]),
        Aggregation("engaged_addresses", "count_distinct", field="email", windows=["30d"]),
    ],
    filter=col("event_type").isin(["open", "click"]), freshness_sla="1h", owner="sales",
    description="Opens and clicks by any contact of the account",
)

# Consent flags arrive like any other signal (crmfs serve: POST /v1/sources/consents/events).
consents = EventSource(
    "consents",
    schema={
        "event_id": "string", "given_at": "timestamp", "customer_id": "string",
        "personalization": "bool", "marketing": "bool",
    },
    event_id="event_id", event_time="given_at", owner="privacy-team", sensitivity="personal",
)
consent = FeatureView(
    "consent", entity=customer, source=consents,
    features=[Latest("personalization", field="personalization"),
              Latest("marketing", field="marketing")],
    owner="privacy-team", description="Each customer's latest consent per purpose",
)

recommender = FeatureService("recommender", features=[browsing, buying], owner="recsys")
# The same features for a model that personalizes: served only with the customer's consent.
personalized = FeatureService(
    "personalized", features=[browsing, buying], owner="recsys",
    purpose="personalization", consent="consent:personalization",
)
"""
