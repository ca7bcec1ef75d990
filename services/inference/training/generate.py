"""Builds the labelled triage tickets the heads train on, and a held-out set by a different "writer".

Two writers never share a sentence: writer A (``train.jsonl``) and writer B (``heldout.jsonl``) each have their
own core sentences per need, their own openings, context, urgency and sign-offs, and B makes typos and quotes
earlier replies. The needs follow the labelling rules of ``shared/data/README.md``: the label is what the
customer needs fixed, so the ambiguous cases (a login problem while tracking a parcel, a refund for a damaged
parcel, an unrequested reset e-mail, duty charged despite "duties included") are written on purpose.
The hand-written ``shared/data/tickets-eval.jsonl`` is never read here.

``python -m services.inference.training.generate`` rewrites both files, deterministically (seeded).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
PRIORITY_ORDER = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class Need:
    category: str
    text: str
    priority: str = "normal"


def needs(category: str, *rows: str | tuple[str, str]) -> list[Need]:
    return [Need(category, row) if isinstance(row, str) else Need(category, row[0], row[1]) for row in rows]


WRITER_A: list[Need] = [
    *needs(
        "billing",
        "I was charged twice for order {order}, {amount} each time. Please refund the duplicate.",
        "My invoice for {month} shows the Pro plan but we are on Starter. Can you correct it?",
        "I cancelled my subscription on {date} and you still took {amount} this month.",
        "The refund you promised for the returned {product} has not reached my account after two weeks.",
        ("Do you offer annual billing with a discount? We are a team of twelve.", "low"),
        "We were billed for 25 seats but only have 18 users. Please credit the difference.",
        "Your renewal went through at the new price although you said our old price was locked in.",
        "Please add our VAT number to the invoices, the last three are missing it.",
        "The coupon code {code} was not applied at checkout, I paid full price.",
        "I was charged import duty on {order} even though the shop said duties included.",
        ("Could you send me a receipt for the payment of {date}? I need it for expenses.", "low"),
        "My card was declined on renewal but the money left my account anyway.",
        "There is a {amount} fee on my statement from you that I don't understand, what is it for?",
        "I downgraded last month but the invoice still bills the higher plan.",
        "Please switch our payment method from card to bank transfer before the next invoice.",
    ),
    *needs(
        "technical",
        "The export to CSV fails with a 500 error every time since this morning.",
        "Your API returns 502 for about half of our requests to the orders endpoint.",
        "The mobile app crashes on launch after the latest update on my Android phone.",
        "Webhooks stopped arriving at our endpoint yesterday, nothing in the delivery log.",
        "SSO login with our Okta tenant fails with an invalid SAML response error.",
        "The dashboard takes over a minute to load and then times out.",
        "Uploading files larger than 10 MB gets stuck at 99% and never finishes.",
        "The sync between your app and Google Calendar stopped working, new events don't appear.",
        "The login page shows a blank screen in Safari, it works in Chrome.",
        ("Is there a way to call the API in batches? The docs don't say.", "low"),
        "Search returns no results for items I know exist, even exact names.",
        "The PDF report renders with broken characters for accented names.",
        "Your integration with Shopify duplicates every order it imports.",
        "Since the new version the notifications arrive hours late.",
        "The installer stops with error code 0x80070005 on Windows 11.",
    ),
    *needs(
        "account",
        "I'm locked out after too many password attempts, please unlock my account.",
        "I lost my phone and with it my 2FA codes, how can I get back into my account?",
        "The password reset email never arrives, I checked spam.",
        "Please change the email address on my account to my new work address.",
        "How do I add two new colleagues to our workspace as editors?",
        "Please delete my account and all my data.",
        "I want to merge my two accounts, I signed up twice with different emails.",
        "Can you make Sara an admin? The previous admin left the company.",
        ("How do I change my display name?", "low"),
        "I can't log in to see where my order is, it says my account is disabled.",
        "Our owner left and nobody can manage billing or users anymore, please transfer ownership to me.",
        "My username shows my old surname, I'd like to update it after getting married.",
        "The invite link for our new team member has expired, please resend it.",
        "I reset my password but the new one is not accepted.",
        "Please remove the user tom@{domain} from our account, he left.",
    ),
    *needs(
        "shipping",
        "Where is my parcel? Tracking for {order} hasn't moved in six days.",
        "The courier marked {order} as delivered but nothing arrived.",
        "My {product} arrived smashed, the box was crushed. I need a replacement.",
        "I received the wrong item, I ordered a {product} in blue and got a red one.",
        "My parcel is held at customs and they ask for an invoice, can you send it?",
        "How do I return the {product}? It doesn't fit.",
        "The package arrived with one item missing from my order {order}.",
        "Can I change the delivery address for {order}? I'm moving this week.",
        ("How long does shipping to Canada usually take?", "low"),
        "The parcel was sent back to you because of a wrong address, please resend it.",
        "I can't log in to track my late parcel, can you just tell me where {order} is?",
        "The {product} came damaged, I'd like a refund instead of a replacement.",
        "{carrier} says the label was created but the package was never handed over.",
        "My order was split in two and the second part never came.",
        "Customs clearance is stuck, the paperwork from you is missing the HS code.",
    ),
    *needs(
        "security",
        "I got a password reset email I never requested. Is someone trying to get into my account?",
        "There is a login from a device in another country that wasn't me.",
        ("Someone changed my account email and I can't get back in, I think I was hacked.", "high"),
        "My card shows three purchases from your shop that I never made.",
        ("We see dozens of tiny charges on our card, it looks like card testing.", "high"),
        "I received a text asking me to pay a customs fee through a link, is this from you?",
        "A new admin appeared in our workspace that none of us added.",
        "I got an email that looks like your invoice but the link goes to a strange site.",
        "Our antivirus flags your desktop installer as malware.",
        "I think I found a security vulnerability in your upload form, where can I report it?",
        ("Someone is logged in to my account right now and sending messages.", "urgent"),
        ("Our API key was leaked in a public repository, please revoke it urgently.", "urgent"),
        "I see purchases of gift cards on my account that I did not authorise.",
        "There were failed login attempts on all our users' accounts overnight.",
        "Someone called pretending to be your support and asked for my password.",
    ),
    *needs(
        "other",
        ("Just wanted to say your support team was fantastic last week, thank you!", "low"),
        ("It would be great if the app had a dark mode.", "low"),
        ("We'd like to discuss a partnership with your company, who should I talk to?", "low"),
        ("I'm a journalist writing about small business software, could I interview someone?", "low"),
        ("Please stop sending me marketing newsletters.", "low"),
        ("Do you have any plans to open an office in Lisbon?", "low"),
        ("Your product is the worst thing I have ever used, everything about it is bad.", "normal"),
        ("Would you sponsor our local developer meetup?", "low"),
        ("Can you add an integration with Notion? A lot of us would use it.", "low"),
        ("Congratulations on the new release, the new design looks great.", "low"),
        ("Are you hiring? I'd love to work for you.", "low"),
        ("I want to resell your product in Poland, what are the conditions?", "low"),
    ),
]

WRITER_B: list[Need] = [
    *needs(
        "billing",
        "u guys billed me {amount} twice this month?? fix it pls",
        "Your system keeps debiting us after we closed the contract in {month}.",
        "The credit note you issued for the returned {product} never showed up on my card.",
        ("quick q - is there a cheaper tier for students?", "low"),
        "Invoice {order} lists a setup fee that was waived in our agreement.",
        "you promised DDP shipping but i had to pay the tax on delivery, want that money back",
    ),
    *needs(
        "technical",
        "getting timeout errors whenever i try to save a report, been like this since tuesday",
        "the calendar widget on our site went blank after your update, console shows a JS error",
        "Our nightly import job fails with 'connection reset' on your side.",
        "push notifs don't work on iphone anymore",
        "the SAML assertion is rejected since you rotated certificates",
        ("is there an SDK for Go or only the REST api?", "low"),
    ),
    *needs(
        "account",
        "cant get in, it says account locked. help",
        "new phone, authenticator app is gone, i need access back",
        "pls give Mark admin rights on our workspace",
        "how do i close my account for good",
        "the reset link says expired every time i click it",
        "we need 3 more seats for the new hires starting monday",
    ),
    *needs(
        "shipping",
        "still waiting on my package, tracking says in transit for 9 days",
        "box arrived wet and the {product} inside is ruined, send a new one",
        "parcel stuck at customs, they want a commercial invoice from you",
        "courier left it at the wrong house, neighbor doesnt have it either",
        "i need to return the {product}, how do i get a label",
        ("do u ship to iceland?", "low"),
    ),
    *needs(
        "security",
        "someone logged into my account from Brazil, wasn't me!!",
        "got a 'verify your account' email from you with a weird link, phishing?",
        "there are orders on my card from your store i never placed",
        "an admin called 'support-team' showed up in our org, nobody knows who that is",
        "SMS says my parcel needs a customs fee paid via link - legit??",
        ("my password was changed and i didnt do it", "high"),
    ),
    *needs(
        "other",
        ("love the new update, keep it up", "low"),
        ("any chance of a linux version someday?", "low"),
        ("we run a podcast about SaaS, would your CEO join an episode?", "low"),
        ("your service is a joke honestly", "normal"),
        ("do you do partnerships with universities?", "low"),
        ("unsubscribe me from all emails", "low"),
    ),
]

A_OPENINGS = ["Hello,", "Hi team,", "Good morning,", "Dear support,", "Hi,", ""]
B_OPENINGS = ["hey", "yo support", "Hallo,", "hi there -", "", "To whom it may concern:"]
A_CONTEXT = [
    "I have been a customer for three years.",
    "This is for our company account.",
    "I already tried the help center.",
    "",
    "",
]
B_CONTEXT = ["been using u since 2019.", "this is for the shop account.", "read the faq, didnt help.", "", ""]
# Urgency sentences move the priority; the label is the higher of the need's and the sentence's.
A_URGENCY = [
    ("Please look into it when you can.", "low"),
    ("This is quite urgent for us.", "high"),
    ("We have a deadline today, please help as soon as possible.", "urgent"),
    ("If this is not resolved I will involve my lawyer.", "urgent"),
    ("It affects all of our users right now.", "urgent"),
    ("We cannot work until this is fixed.", "high"),
    ("", None),
    ("", None),
    ("", None),
    ("", None),
    ("", None),
    ("", None),
    ("", None),
]
B_URGENCY = [
    ("no rush.", "low"),
    ("need this sorted by tomorrow.", "high"),
    ("this is costing us money every hour!!", "urgent"),
    ("I'll be filing a complaint with consumer protection.", "urgent"),
    ("whole team is blocked.", "high"),
    ("", None),
    ("", None),
    ("", None),
    ("", None),
    ("", None),
]
A_CLOSINGS = ["Thanks,\n{name}", "Best regards,\n{name}", "Kind regards, {name}", "Thank you.", ""]
B_CLOSINGS = ["thx", "--\n{name}\nSent from my phone", "cheers {name}", "", "Mit freundlichen Grüßen\n{name}"]
NAMES = ["Anna", "Ben Carter", "Chloé", "Dmitri", "Emeka", "Fatima", "Giulia", "Hiro", "Isabel", "Jonas"]
SLOTS = {
    "order": ["#40211", "ORD-88412", "#A-5531", "order 77120", "BW-99013"],
    "amount": ["$49", "€120", "£9.99", "$1,200", "€35.50"],
    "month": ["March", "last month", "October", "January"],
    "date": ["12 May", "the 3rd", "last Friday", "1 June"],
    "product": ["blender", "jacket", "monitor", "desk lamp", "headphones"],
    "code": ["SPRING20", "WELCOME10", "VIP-15"],
    "domain": ["acme.io", "example.com", "northwind.co"],
    "carrier": ["DHL", "UPS", "FedEx", "DPD", "Royal Mail"],
}


def fill(text: str, rng: random.Random) -> str:
    return text.format(**{slot: rng.choice(values) for slot, values in SLOTS.items()})


def typo(text: str, rng: random.Random, rate: float) -> str:
    """Swap neighbouring letters in a few words, as a hurried writer does."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 4 and word.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(word) - 2)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def ticket(need: Need, writer: str, rng: random.Random) -> dict[str, str]:
    b = writer == "B"
    opening = rng.choice(B_OPENINGS if b else A_OPENINGS)
    context = rng.choice(B_CONTEXT if b else A_CONTEXT)
    urgency, raised = rng.choice(B_URGENCY if b else A_URGENCY)
    closing = rng.choice(B_CLOSINGS if b else A_CLOSINGS).format(name=rng.choice(NAMES))
    core = fill(need.text, rng)
    parts = [opening, core, context, urgency] if rng.random() < 0.5 else [opening, context, core, urgency]
    text = " ".join(p for p in parts if p)
    if b:
        text = typo(text, rng, 0.08)
        if rng.random() < 0.3:
            text += "\n\n> On Mon, support wrote:\n> Thanks for reaching out, we are looking into it."
    if closing:
        text += "\n\n" + closing
    priority = need.priority
    if raised is not None:
        if raised == "low":
            priority = "low" if need.priority in ("low", "normal") else need.priority
        elif PRIORITY_ORDER.index(raised) > PRIORITY_ORDER.index(priority):
            priority = raised
    return {"text": text.strip(), "category": need.category, "priority": priority, "writer": writer}


def build(writer: str, per_need: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pool = WRITER_B if writer == "B" else WRITER_A
    rows = [ticket(need, writer, rng) for need in pool for _ in range(per_need)]
    rng.shuffle(rows)
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main() -> None:
    write(HERE / "train.jsonl", build("A", per_need=12, seed=7))
    write(HERE / "heldout.jsonl", build("B", per_need=5, seed=11))


if __name__ == "__main__":
    main()
