"""A labelled corpus of review texts for the PII scrubber (en/fr/de).

Each entry: (language, text, expected PII values by kind). Values are the exact substrings a
perfect scrubber replaces. Tricky non-PII numbers (order numbers, prices, dates, SKUs,
versions, tracking ids) are in the texts on purpose and labelled as nothing.
Written by hand, plus templates that combine hand-written sentences with value pools so that
each kind appears in many contexts.
"""

from __future__ import annotations

from itertools import cycle

Entry = tuple[str, str, dict[str, list[str]]]

# --- hand-written entries ---------------------------------------------------------------------
HANDWRITTEN: list[Entry] = [
    ("en", "Great kettle, boils in 2 minutes. Paid $49.99 on 2024-03-15.", {}),
    ("en", "Order #4532015112830366 arrived late, box was damaged.", {}),
    (
        "en",
        "Contact me at john.smith@gmail.com if you need photos.",
        {"email": ["john.smith@gmail.com"]},
    ),
    (
        "en",
        "Support called me back on +1 415 555 0132 within an hour.",
        {"phone": ["+1 415 555 0132"]},
    ),
    ("en", "My card 4111 1111 1111 1111 was charged twice!!", {"card": ["4111 1111 1111 1111"]}),
    (
        "en",
        "Refund went to GB82 WEST 1234 5698 7654 32 after 10 days.",
        {"iban": ["GB82 WEST 1234 5698 7654 32"]},
    ),
    ("en", "The app kept logging in from 203.0.113.45, weird.", {"ip": ["203.0.113.45"]}),
    (
        "en",
        "Firmware link https://admin:s3cret@updates.example.com/fw.bin is in the manual?!",
        {"url_credentials": ["https://admin:s3cret@updates.example.com/fw.bin"]},
    ),
    ("en", "Model KTL-100, serial 8841203391, version 2.4.1.7 still leaks.", {}),
    ("en", "Bought 3 for 29.97 total, 1,299 reviews can't be wrong.", {}),
    ("en", "Tracking number 1Z999AA10123456784 never updated.", {}),
    ("en", "Regards, Peter Miller", {"name": ["Peter Miller"]}),
    ("en", "My name is Sarah and this blender is loud.", {"name": ["Sarah"]}),
    ("en", "I am very disappointed with the lid.", {}),
    ("en", "Called (212) 555-0187 and nobody answered.", {"phone": ["(212) 555-0187"]}),
    (
        "en",
        "Their server 2001:db8:85a3::8a2e:370:7334 leaked my data lol",
        {"ip": ["2001:db8:85a3::8a2e:370:7334"]},
    ),
    ("en", "Arrived 12/03/2024 at 10:45:30, exactly as promised.", {}),
    ("en", "5 stars. 10/10 would buy again. 100% recommend.", {}),
    ("en", "Invoice 2024-000123 shows the wrong VAT of 20%.", {}),
    ("en", "Ticket 5555-4444-3333 still open after 3 weeks.", {}),
    ("en", "Call 555-123-4567 for the installer, he was great.", {"phone": ["555-123-4567"]}),
    ("en", "Cheers, Tom", {"name": ["Tom"]}),
    ("en", "Paid with Amex 3782 822463 10005, no issues.", {"card": ["3782 822463 10005"]}),
    (
        "en",
        "Mastercard 5555555555554444 declined at checkout twice.",
        {"card": ["5555555555554444"]},
    ),
    (
        "en",
        "Email me: a.b-c+reviews@sub.example.co.uk",
        {"email": ["a.b-c+reviews@sub.example.co.uk"]},
    ),
    ("en", "Weighs 1.25 kg, 30 x 20 x 15 cm, 1500 W.", {}),
    ("en", "Router at 192.168.0.1 showed the device fine.", {"ip": ["192.168.0.1"]}),
    ("en", "SKU 4006381333931 is the EAN on the box.", {}),
    ("en", "Thanks, Emily Clarke", {"name": ["Emily Clarke"]}),
    ("en", "Lasted from 2019 to 2023, about 1460 days.", {}),
    ("fr", "Bouilloire parfaite, payée 39,90 € le 15/03/2024.", {}),
    ("fr", "Commande n° 0612345678 reçue avec deux jours de retard.", {}),
    ("fr", "Appelez-moi au 06 12 34 56 78 pour plus d'infos.", {"phone": ["06 12 34 56 78"]}),
    ("fr", "Le SAV m'a rappelé au +33 1 42 68 53 00, très pro.", {"phone": ["+33 1 42 68 53 00"]}),
    (
        "fr",
        "Mon mail : marie.dupont@orange.fr, je peux envoyer des photos.",
        {"email": ["marie.dupont@orange.fr"]},
    ),
    (
        "fr",
        "Remboursé sur FR76 3000 6000 0112 3456 7890 189 sous 5 jours.",
        {"iban": ["FR76 3000 6000 0112 3456 7890 189"]},
    ),
    ("fr", "Je m'appelle Julien et je suis déçu du couvercle.", {"name": ["Julien"]}),
    ("fr", "Cordialement, Anne-Sophie Martin", {"name": ["Anne-Sophie Martin"]}),
    ("fr", "Je suis très content, livraison en 48h.", {}),
    ("fr", "Facture 2024/0457 : TVA 20 %, total 119,00 €.", {}),
    ("fr", "Carte 4970 1012 3456 7893 débitée deux fois.", {"card": ["4970 1012 3456 7893"]}),
    ("fr", "Colis 6A12345678901 jamais arrivé.", {}),
    ("fr", "Tél. 01.45.67.89.10 du magasin, accueil parfait.", {"phone": ["01.45.67.89.10"]}),
    ("fr", "Référence 0123456789 introuvable sur le site.", {}),
    ("fr", "La box en 192.0.2.10 plantait avec l'appli.", {"ip": ["192.0.2.10"]}),
    ("fr", "Merci, Lucie", {"name": ["Lucie"]}),
    ("fr", "Acheté le 03.01.2024 pour 59,99 €, garantie 2 ans.", {}),
    ("fr", "Moi c'est Karim, le mixeur est top.", {"name": ["Karim"]}),
    ("fr", "Version 3.2.1 de l'appli, toujours le bug.", {}),
    ("fr", "Numéro de suivi 8R00012345678 bloqué.", {}),
    ("de", "Wasserkocher top, 29,99 € am 01.02.2024 bezahlt.", {}),
    ("de", "Bestellnummer 0301234567 kam beschädigt an.", {}),
    ("de", "Ruft mich an: 030 12345678, gerne auch abends.", {"phone": ["030 12345678"]}),
    ("de", "Hotline +49 89 1234 5678 war sehr freundlich.", {"phone": ["+49 89 1234 5678"]}),
    ("de", "Meine Mail ist k.mueller@web.de falls Fragen sind.", {"email": ["k.mueller@web.de"]}),
    (
        "de",
        "Erstattung auf DE89 3704 0044 0532 0130 00 kam schnell.",
        {"iban": ["DE89 3704 0044 0532 0130 00"]},
    ),
    ("de", "Ich heiße Jonas und der Mixer ist laut.", {"name": ["Jonas"]}),
    ("de", "Viele Grüße, Anna Schmidt", {"name": ["Anna Schmidt"]}),
    ("de", "Ich bin sehr zufrieden, Lieferung in 2 Tagen.", {}),
    ("de", "Rechnung Nr. 2024-7781, MwSt 19 %, gesamt 149,00 €.", {}),
    ("de", "Karte 5105 1051 0510 5100 wurde doppelt belastet.", {"card": ["5105 1051 0510 5100"]}),
    ("de", "Sendungsnummer 00340434161234567890 hängt fest.", {}),
    ("de", "Modell WK-2000, Seriennummer 7781-2231-9090.", {}),
    ("de", "Router 10.0.0.138 hat das Gerät sofort gefunden.", {"ip": ["10.0.0.138"]}),
    ("de", "Mein Name ist Lena, das Gerät ist super.", {"name": ["Lena"]}),
    ("de", "LG, Max", {"name": ["Max"]}),
    ("de", "Gekauft am 2023-11-24, nach 14 Tagen defekt.", {}),
    ("de", "Tel 0171 2345678 vom Techniker, kam pünktlich.", {"phone": ["0171 2345678"]}),
    (
        "de",
        "Österreichische IBAN AT61 1904 3002 3457 3201 hat funktioniert.",
        {"iban": ["AT61 1904 3002 3457 3201"]},
    ),
    ("de", "Version 1.0.12 behebt den Fehler nicht.", {}),
    ("en", "Three stars: works, but 45 dB is loud at 6:30 am.", {}),
    ("en", "Lot 2023-11-A, best before 11/2025, batch 004512.", {}),
    (
        "en",
        "Dear seller, my wife Olga loves it. Regards, Daniel Brooks",
        {"name": ["Olga", "Daniel Brooks"]},
    ),
    ("en", "I'm Kevin, and the hinge broke after 2 weeks.", {"name": ["Kevin"]}),
    ("en", "Warranty claim ref 3056930009020004 went nowhere.", {}),
    ("en", "Ping from 0.0.0.0 in the logs, that is odd.", {"ip": ["0.0.0.0"]}),
    ("en", "Seller phone +61 2 9876 5432 on the invoice.", {"phone": ["+61 2 9876 5432"]}),
    ("fr", "Je suis Paul Durand, client depuis 2015.", {"name": ["Paul Durand"]}),
    ("fr", "Écran 27 pouces, 144 Hz, 1 ms, 299 € au lieu de 349 €.", {}),
    ("fr", "Envoyé à 12 h 30, reçu le 2 mars, note 4,5/5.", {}),
    (
        "fr",
        "Mon IBAN BE68 5390 0754 7034 pour le remboursement svp.",
        {"iban": ["BE68 5390 0754 7034"]},
    ),
    ("de", "Ich bin Jonas Becker und enttäuscht vom Deckel.", {"name": ["Jonas Becker"]}),
    ("de", "Grüße, Petra", {"name": ["Petra"]}),
    ("de", "Artikel 4006381333931, Charge 2024-03, 3 Stück à 4,99 €.", {}),
    ("de", "Handy 0157 12345678 für Rückfragen.", {"phone": ["0157 12345678"]}),
    ("en", "Ask for Mr Thompson in the store, he sorted it.", {"name": ["Thompson"]}),
    ("fr", "Merci à Nathalie du service client !", {"name": ["Nathalie"]}),
    ("de", "Danke an Herrn Yilmaz vom Support.", {"name": ["Yilmaz"]}),
    (
        "de",
        "Der Server 2a00:1450:4001:82b::200e antwortet nicht.",
        {"ip": ["2a00:1450:4001:82b::200e"]},
    ),
]

# --- templates × value pools --------------------------------------------------------------------
POOLS: dict[str, list[str]] = {
    "email": [
        "jane.doe@example.com",
        "pierre@exemple.fr",
        "h.weber@firma.de",
        "x_y.z@mail.co",
        "first.last+tag@gmail.com",
        "info@kaffee-haus.at",
    ],
    "phone": [
        "+44 20 7946 0958",
        "+33 6 98 76 54 32",
        "+49 151 23456789",
        "07 11 22 33 44",
        "0221 9876543",
        "+1 (646) 555-0143",
        "0044 20 7946 0000",
        "06-12-34-56-78",
    ],
    "card": [
        "4242 4242 4242 4242",
        "5555-5555-5555-4444",
        "4000056655665556",
        "3714 496353 98431",
        "6011 1111 1111 1117",
        "2223 0031 2200 3222",
    ],
    "iban": [
        "DE44 5001 0517 5407 3249 31",
        "FR14 2004 1010 0505 0001 3M02 606",
        "GB29 NWBK 6016 1331 9268 19",
        "NL91 ABNA 0417 1643 00",
        "ES91 2100 0418 4502 0005 1332",
        "CH93 0076 2011 6238 5295 7",
    ],
    "ip": [
        "198.51.100.7",
        "172.16.254.1",
        "2001:db8::ff00:42:8329",
        "8.8.4.4",
        "fe80::1ff:fe23:4567:890a",
    ],
    "url_credentials": [
        "ftp://user:pa55word@files.example.org/manual.pdf",
        "https://bob:hunter2@shop.example.com/account",
        "http://root:toor@192.0.2.55:8080/admin",
    ],
}

TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "email": [
        ("en", "Product fine, but they spammed {v} after order #88123."),
        ("fr", "Écrivez-moi à {v}, commande 2024-5512 toujours pas livrée."),
        ("de", "Bitte an {v} schreiben, Bestellung 556677 fehlt noch."),
    ],
    "phone": [
        ("en", "Courier rang {v} twice, parcel 12 of 15 still missing."),
        ("fr", "Le livreur m'a appelé au {v} le 12/05, colis OK."),
        ("de", "Der Kundendienst ist unter {v} erreichbar, kostet 0,14 €/Min."),
    ],
    "card": [
        ("en", "Charged 89.90 twice on {v}, refund pending."),
        ("fr", "Débité de 89,90 € deux fois sur la carte {v}."),
        ("de", "Zweimal 89,90 € von {v} abgebucht, Ärger."),
    ],
    "iban": [
        ("en", "Refund of 120.00 sent to {v} on 2024-06-01."),
        ("fr", "Remboursement de 120,00 € viré sur {v} le 01/06/2024."),
        ("de", "Erstattung 120,00 € auf {v} am 01.06.2024."),
    ],
    "ip": [
        ("en", "Smart plug keeps calling home to {v} every 30 s."),
        ("fr", "La prise connectée contacte {v} toutes les 30 s."),
        ("de", "Die Steckdose funkt alle 30 s an {v}."),
    ],
    "url_credentials": [
        ("en", "Manual says use {v} for updates, rating 2/5."),
        ("fr", "Le manuel indique {v} pour la mise à jour, note 2/5."),
        ("de", "Laut Anleitung {v} für Updates, Note 2 von 5."),
    ],
}

NEGATIVE_TEMPLATES: list[tuple[str, str]] = [
    ("en", "Order {n} placed on {d}, paid {p}. SKU {s}."),
    ("fr", "Commande {n} passée le {d}, payée {p}. Réf {s}."),
    ("de", "Bestellung {n} vom {d}, bezahlt {p}. Artikel {s}."),
]
NEGATIVE_VALUES = [
    ("#100234", "2024-01-05", "$12.50", "KTL-100"),
    ("no. 7781002", "05/01/2024", "1 299,00 €", "BLD-2000X"),
    ("A-44512", "05.01.2024", "€1,299.00", "TST-4"),
    ("2024-000998", "Jan 5, 2024", "19.99 USD", "SKU-88-12"),
    ("#4111111111111111", "2023-12-31", "0,99 €", "CAF-777"),
    ("nr. 0612345678", "31.12.2023", "249.00", "MX-5"),
    ("98765432", "12/31/2023", "3x 4.50", "V2.3.4"),
    ("ref 0301234567", "2023-W52", "1.000,00 €", "A1B2C3"),
    ("#55512345", "2024-02-29T10:15:00Z", "£15", "PR-12-34-56"),
    ("n° 2024/88", "29 février 2024", "15 €", "EAN 3017620422003"),
    ("Nr. 12-34-56-78", "29. Februar 2024", "15,00 EUR", "ISBN 978-3-16-148410-0"),
    ("#1.2.3.4", "Q1 2024", "1 500 €", "R2-D2"),
]


def _templated() -> list[Entry]:
    entries: list[Entry] = []
    for kind, templates in TEMPLATES.items():
        values = cycle(POOLS[kind])
        for _round in range(5):
            for lang, template in templates:
                value = next(values)
                entries.append((lang, template.format(v=value), {kind: [value]}))
    negatives = cycle(NEGATIVE_VALUES)
    for _round in range(len(NEGATIVE_VALUES)):
        for lang, template in NEGATIVE_TEMPLATES:
            n, d, p, s = next(negatives)
            entries.append((lang, template.format(n=n, d=d, p=p, s=s), {}))
    # Two kinds in one text.
    for i, (lang, template) in enumerate(TEMPLATES["email"]):
        email = POOLS["email"][i]
        phone = POOLS["phone"][i]
        entries.append(
            (lang, template.format(v=email) + f" / {phone}", {"email": [email], "phone": [phone]})
        )
    return entries


CORPUS: list[Entry] = HANDWRITTEN + _templated()
