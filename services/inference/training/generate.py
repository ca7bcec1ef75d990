"""Builds the labelled triage tickets the heads train on, and a held-out set by a different "writer".

Four writers never share a sentence: writers A, C and D (``train.jsonl``) and writer B (``heldout.jsonl``) each
have their own core sentences per need, their own openings, context, asides, urgency and sign-offs; B, C and D
make typos and quote earlier replies, each in its own way; D writes long business mail with titles, disclaimers
and a few sentences in German or French. The training writers borrow each other's frames (opening, context,
urgency, aside, sign-off) half the time, so that style says nothing about the label; writer B never mixes.
The needs follow the labelling rules of
``shared/data/README.md``: the label is what the customer needs fixed, so the ambiguous cases (a login problem
while tracking a parcel, a refund for a damaged parcel, an unrequested reset e-mail, duty charged despite
"duties included") are written on purpose.
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
        "We returned the {product} three weeks ago, your warehouse confirmed it, but the money is still not back.",
        "The annual plan was supposed to cost {amount} but the charge was higher, please explain the difference.",
        "Why am I paying for a second workspace I closed in {month}?",
        ("Can I get the invoices with our new company address from now on?", "low"),
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
        "The login form throws an error after I press submit, the password is correct.",
        "Single sign-on through Azure AD redirects in a loop and never finishes.",
        "Since your maintenance last night the app shows 'service unavailable' for everyone.",
        "Emails sent from your platform land in spam since you changed mail servers.",
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
        "I forgot my password and the reset link goes to an email address I no longer have.",
        "My authenticator app was on my old phone, I need 2FA reset to log in again.",
        "After the third wrong password my account got blocked, how long until I can try again?",
        "Can you give my assistant read-only access to our account?",
        "I want to change the owner of our organisation to my colleague.",
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
        "The courier wants me to pay duty before releasing the parcel, what do I do?",
        "I can't sign in to my account, and I need the tracking number for {order} which is late.",
        "The {product} arrived with a cracked screen, I want my money back or a new one.",
        "Half of my order is missing and the tracking shows only one package.",
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
        "I keep getting two-factor codes by SMS that I did not ask for.",
        "Your system sent me a login alert from a city I have never been to.",
        "My account is sending messages to my contacts that I never wrote.",
        "There's an order on my account shipped to an address I don't know, I didn't place it.",
        "Is this email asking me to confirm my bank details really from you?",
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
        ("We offer SEO services that will bring your site to the first page of Google.", "low"),
        ("I have been thinking about how software used to be simpler, what happened?", "low"),
        ("Nothing works the way it should anymore and nobody ever listens.", "normal"),
        ("Is your company planning to go public?", "low"),
    ),
]

# Writer C also trains: long, chatty mail with the need buried in the middle, so the heads learn the need and
# not writer A's sentence shapes.
WRITER_C: list[Need] = [
    *needs(
        "billing",
        "so I looked at my bank app this morning and there are two payments to you for the same thing, one should go",
        "after our call last week your colleague agreed to credit us for the outage month, the invoice doesn't show it",
        "the price on the website was lower than what I was actually charged at checkout",
        "our finance team needs the invoices split per department, right now they all come as one",
        "I stopped using the service in spring and the monthly fee still comes out of my account",
        ("before we buy, is the price per user or per workspace?", "low"),
    ),
    *needs(
        "technical",
        "whenever I open a project with more than a few hundred tasks the whole page freezes",
        "the numbers in the weekly report don't add up with what the dashboard shows, looks like a calculation bug",
        "our developers get a 401 from the API even with a freshly generated token",
        "the desktop app doesn't start anymore after the automatic update, it just closes",
        "the import from our old tool drops every attachment, the files are simply not there",
        ("is the API rate limit per key or per account? couldn't find it in the docs", "low"),
    ),
    *needs(
        "account",
        "I've been trying to get into my account since yesterday, the code for two-step login never shows up",
        "my colleague left and her account still has access, can you turn it off",
        "I changed phones and now the login asks for a code from an app I no longer have",
        "we'd like to set up roles so the interns can only view things",
        "the account is under my old work email which I can't access anymore",
        ("how do I turn on two-step login for the whole team?", "low"),
    ),
    *needs(
        "shipping",
        "the order I placed two weeks ago still says 'preparing for shipment'",
        "the parcel came but the {product} inside was broken in two, the packaging was thin",
        "the delivery driver says nobody was home but I was there all day",
        "I need to send back one of the two {product}s, how does the return work",
        "the package has been in the customs warehouse for ten days and nobody tells me why",
        ("do you deliver on Saturdays?", "low"),
    ),
    *needs(
        "security",
        "I got a message saying my password was changed, but I didn't change anything",
        "there's a payment on my card to you that I have never authorised, I don't even have an account",
        "someone sent our employees an email pretending to be your billing team with a fake payment link",
        "our security scanner found your browser extension sending data to an unknown server",
        "in the audit log there are downloads of all our files at 3am by a user nobody recognises",
        ("a colleague got a strange message asking for their login code, should we worry?", "high"),
    ),
    *needs(
        "other",
        ("your team did a lovely job with the onboarding call, just wanted to say that", "low"),
        ("we're organising a conference and would love to have you as a speaker", "low"),
        ("honestly everything about this company has gone downhill, I'm disappointed", "normal"),
        ("it would be really handy to have keyboard shortcuts for the common actions", "low"),
        ("I'm a student writing my thesis on customer support, can I ask you a few questions?", "low"),
        ("hello, we make packaging and wondered if you need a supplier", "low"),
    ),
]

# Writer D: long business mail, several sentences around the need, mixed languages, signatures with titles.
WRITER_D: list[Need] = [
    *needs(
        "billing",
        "Our accounts team spotted that the March and April invoices were both debited in April. One of them needs "
        "to be returned to us.",
        "When we moved from five to three licences the invoice kept the five, we have been overpaying since then",
        "You promised a goodwill credit after the incident in {month}; it never appeared on a statement",
        "A late payment fee of {amount} was added although the transfer left our bank two days before the due date",
        "After the trial ended I was put on the most expensive tier instead of the one I picked at sign-up",
        "The {product} came back to your warehouse on {date}, tracking confirms it, yet the credit note is still "
        "missing",
        "The receipt shows tax at 21 % but we are a registered business abroad and should be reverse-charged",
        "Ihr habt zweimal abgebucht, bitte eine Zahlung zurück. (charged twice for the same month)",
        "I closed the account in writing last quarter, but the direct debit keeps running every month",
        ("For our budget planning: will the price per seat change next year?", "low"),
        ("Is it possible to pay by purchase order instead of card?", "low"),
        "The checkout promised all duties included and then the courier collected {amount} in import duty from us",
    ),
    *needs(
        "technical",
        "Since Tuesday the scheduled reports arrive empty, the attachment is a zero-byte file",
        "The sign-in form itself is broken: pressing the button does nothing and the console shows a script error",
        "Our SAML connection with the identity provider rejects every assertion with a clock-skew error",
        "The REST API answers 429 even though we send far fewer requests than the documented limit",
        "Pages in the admin area render without styles, just plain text and broken images",
        "After updating the iOS app the camera upload crashes the app every single time",
        "Das Dashboard lädt seit dem Update nicht mehr, nur ein weißer Bildschirm (dashboard blank since update)",
        "Data we entered yesterday disappeared after the sync, the last change we can see is from Monday",
        "The webhook payloads arrive with an invalid signature, so our server rejects them all",
        ("Is there an SDK for Python, or do we call the REST endpoints directly?", "low"),
        "Exports in Excel format open with all the dates shifted by one day",
        "Everyone in our company gets a gateway timeout on the main page since your release",
    ),
    *needs(
        "account",
        "I entered the wrong password a few times and now the account is locked for 24 hours, please unlock it",
        "The password reset link I requested expires before I can even open it",
        "Our administrator is on leave and nobody else can add the two new hires, can you make me an admin?",
        "I lost the phone with the authenticator app and the backup codes are on it too",
        "Please merge my two accounts, I created the second by mistake with my private address",
        "Je n'arrive plus à me connecter, le compte est bloqué (locked out, can you reset it)",
        "We need to transfer ownership of the workspace to our new CTO before I leave the company",
        "Please rename our organisation, we changed the company name last month",
        ("How do I add a read-only role for our auditors?", "low"),
        "The verification e-mail for my new address never arrives, so I can't finish changing it",
        "Please delete my account and the data in it, I no longer use the service",
        "My username still shows my maiden name and the settings page won't let me change it",
    ),
    *needs(
        "shipping",
        "The pallet was delivered with the shrink wrap torn and three of the {product}s scratched; we want "
        "replacements",
        "Tracking has not moved for a week, the last scan is at the {carrier} hub",
        "You sent the wrong size, I ordered a large {product} and got a small one; how do I exchange it?",
        "The parcel is held at customs and they ask for a commercial invoice we never received from you",
        "The courier left the box at the wrong house and the neighbour denies having it",
        "Unser Paket ist nie angekommen, laut {carrier} zugestellt (never arrived though marked delivered)",
        "I can't log in to track the parcel, but really I just need to know where my order is",
        "Half of the order arrived, the second box with the {product} is missing",
        ("Do you ship to Norway, and how long does it take?", "low"),
        "The {product} arrived dented and not working; please send a new one or refund, whatever is faster",
        "I want to return the unopened {product}, the return label in the box is for another country",
        "Delivery was promised for {date} and it's now ten days later with no update",
    ),
    *needs(
        "security",
        "We got a password reset e-mail for the admin account that none of us requested",
        "There is a login from a country we have never been to in our account history, at 4 in the morning",
        "An admin user appeared in our workspace that none of us created",
        "My card shows three small charges from you I never made, looks like someone is testing it",
        "Customers received a text about a customs fee with a link to a payment page that looks like yours",
        "Our antivirus flags your installer as a trojan and quarantines it",
        "Someone is logged in to my account right now and changing settings, I can see it happening",
        "Une personne a changé mon adresse e-mail sans mon accord (someone changed my email without consent)",
        "An API key of ours appears in a public code repository and we don't know who posted it",
        ("Do you support hardware security keys for sign-in?", "low"),
        "The 2FA codes keep arriving by SMS although I never tried to log in",
        "Our exports were downloaded by an IP address that isn't ours, please tell us what was accessed",
    ),
    *needs(
        "other",
        ("Just a thank-you: your colleague went above and beyond on the call yesterday.", "low"),
        ("Feature idea: a dark mode for the reports would be lovely.", "low"),
        ("We are a journalist team writing about software support; could we interview someone?", "low"),
        ("Would you consider a partnership with our agency? We resell tools like yours.", "low"),
        ("Your product has become worse with every update and nobody listens.", "normal"),
        ("Can you recommend a good book on customer success? Asking for a friend.", "low"),
        ("I want to invite your CEO to our podcast.", "low"),
        ("Please stop sending me the newsletter.", "low"),
        ("Is your company hiring developers in Berlin?", "low"),
        ("We're a charity looking for sponsors for our summer event, any chance?", "low"),
        ("Great service so far, keep it up!", "low"),
        ("I have a general question about your sustainability policy.", "low"),
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
# Sentences that name another topic only to rule it out: the label follows the need, not the words around it.
A_ASIDES = [
    ("Logging in works fine, that's not the problem.", "account"),
    ("The delivery itself was fine.", "shipping"),
    ("This is not about my invoice.", "billing"),
    ("No error messages appear anywhere.", "technical"),
    ("Nothing suggests my account was hacked.", "security"),
]
B_ASIDES = [("login is ok btw.", "account"), ("billing is fine.", "billing"), ("package came on time.", "shipping")]
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


@dataclass(frozen=True)
class Voice:
    openings: list[str]
    context: list[str]
    urgency: list[tuple[str, str | None]]
    asides: list[tuple[str, str]]
    closings: list[str]
    typos: float
    quote: str


VOICES = {
    "A": Voice(A_OPENINGS, A_CONTEXT, A_URGENCY, A_ASIDES, A_CLOSINGS, 0.0, ""),
    "B": Voice(
        B_OPENINGS,
        B_CONTEXT,
        B_URGENCY,
        B_ASIDES,
        B_CLOSINGS,
        0.08,
        "\n\n> On Mon, support wrote:\n> Thanks for reaching out, we are looking into it.",
    ),
    "C": Voice(
        ["Hi folks,", "Morning!", "Hey there,", "Hello hello,", ""],
        ["long story short:", "not sure who handles this but", "sorry for the long mail.", "", ""],
        [
            ("whenever you get a chance.", "low"),
            ("would appreciate a quick answer, it's holding things up.", "high"),
            ("our launch is in two hours, please!", "urgent"),
            ("my solicitor has been copied on this.", "urgent"),
            ("", None),
            ("", None),
            ("", None),
            ("", None),
        ],
        [
            ("(the sign-in part works, before you ask)", "account"),
            ("(invoices are all fine)", "billing"),
            ("(shipping was quick, no complaints there)", "shipping"),
            ("(the app itself runs fine)", "technical"),
        ],
        ["Cheers,\n{name}", "Warmly, {name}", "{name} | Operations", "ta", ""],
        0.04,
        "\n\n-----Original Message-----\nFrom: Support\nSubject: Re: your request",
    ),
    "D": Voice(
        ["Dear Sir or Madam,", "Good afternoon,", "Hallo zusammen,", "Bonjour,", "Hello support team,", ""],
        [
            "I am writing on behalf of our purchasing department.",
            "We have used your product across three offices for a while now.",
            "Apologies if this reaches the wrong team.",
            "Following up on my earlier message.",
            "",
            "",
        ],
        [
            ("There is no hurry on this.", "low"),
            ("We would appreciate an answer this week.", None),
            ("Please treat this with priority, it blocks our month-end close.", "high"),
            ("Our legal department is now involved.", "urgent"),
            ("All of our staff are affected at the moment.", "urgent"),
            ("", None),
            ("", None),
            ("", None),
            ("", None),
        ],
        [
            ("Our payments are all in order, to be clear.", "billing"),
            ("The shipment itself is not the issue.", "shipping"),
            ("Access to the account works normally.", "account"),
            ("We see no sign of anything suspicious.", "security"),
            ("Technically everything runs fine.", "technical"),
        ],
        [
            "Kind regards\n{name}\nHead of Procurement\nNorthwind Trading GmbH\nThis e-mail may contain "
            "confidential information.",
            "Viele Grüße aus Hamburg\n{name}",
            "Cordialement,\n{name}",
            "Best,\n{name}\nSent from Outlook",
            "",
        ],
        0.02,
        "\n\nOn Tue, Customer Care <care@example.com> wrote:\n> Dear customer, thank you for your patience.\n> "
        "Kind regards, Customer Care",
    ),
}


def ticket(need: Need, writer: str, rng: random.Random) -> dict[str, str]:
    voice = VOICES[writer]
    # Training writers borrow each other's frames half the time, so that style says nothing about the label.
    mixable = [VOICES[w] for w in TRAINING_WRITERS] if writer in TRAINING_WRITERS else []

    def frame() -> Voice:
        return rng.choice(mixable) if mixable and rng.random() < 0.5 else voice

    opening = rng.choice(frame().openings)
    context = rng.choice(frame().context)
    urgency, raised = rng.choice(frame().urgency)
    asides = [text for text, topic in frame().asides if topic != need.category]
    aside = rng.choice(asides) if asides and rng.random() < 0.35 else ""
    closing = rng.choice(frame().closings).format(name=rng.choice(NAMES))
    core = fill(need.text, rng)
    parts = [opening, core, context, aside, urgency] if rng.random() < 0.5 else [opening, context, aside, core, urgency]
    text = " ".join(p for p in parts if p)
    if voice.typos:
        text = typo(text, rng, voice.typos)
    if voice.quote and rng.random() < 0.3:
        text += voice.quote
    if closing:
        text += "\n\n" + closing
    priority = need.priority
    if raised is not None:
        if raised == "low":
            priority = "low" if need.priority in ("low", "normal") else need.priority
        elif PRIORITY_ORDER.index(raised) > PRIORITY_ORDER.index(priority):
            priority = raised
    return {"text": text.strip(), "category": need.category, "priority": priority, "writer": writer}


# Each file: (writer, tickets per need, seed) in order.
PLANS = {
    "train.jsonl": [("A", 12, 7), ("C", 10, 5), ("D", 8, 3)],
    "heldout.jsonl": [("B", 5, 11)],
}
TRAINING_WRITERS = ("A", "C", "D")


def build(writer: str, per_need: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pool = {"A": WRITER_A, "B": WRITER_B, "C": WRITER_C, "D": WRITER_D}[writer]
    rows = [ticket(need, writer, rng) for need in pool for _ in range(per_need)]
    rng.shuffle(rows)
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main() -> None:
    for name, plan in PLANS.items():
        write(HERE / name, [row for writer, per_need, seed in plan for row in build(writer, per_need, seed)])


if __name__ == "__main__":
    main()
