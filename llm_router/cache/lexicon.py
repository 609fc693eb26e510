"""Word lists the verifier reads: general English, not any evaluation file's words.

Each list is a linguistic category (function words, antonymous affixes, comparative
forms, question frames, units); a word belongs because of what it is, not because
a test pair needed it.
"""

from __future__ import annotations

def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Function words: they carry the frame, not the topic.
FUNCTION = _set("""
a an the this that these those there here it its it's itself one ones
i me my mine myself we us our ours ourselves you your yours yourself yourselves
he him his himself she her hers herself they them their theirs themselves someone somebody something anyone anybody
anything
be am is are was were been being do does did doing done have has had having
will would shall should can could may might must ought
to of in on at by for with from into onto about as than then so such
and or but nor if whether while when whenever where wherever what whatever which who whom whose why how
just also very really truly quite rather much many over under above below between among per via due because
now still ever even some any few lot lots bit such kind else other another own yet already most
s t d ll m re ve
""")

#: How a question is asked rather than what it asks: requests, politeness, hedges.
FRAMING = _set("""
tell explain describe show walk through guide help please let know want wondering wonder curious
question questions ask asking answer idea thing things stuff kind sort exactly actually basically
generally usually typically normally probably possible possibly able way ways method step steps process
procedure instructions instruction best good proper correct right recommended ideal
get got getting go going take taking takes took put give me use using used
need needs needed require requires required requirement necessary must
mean means meaning meant definition define term explained
like would guys folks somehow personally according opinion think feel exist exists
tips tip advice suggestion suggestions suggest idea ideas recommendation recommendations recommend
""")

#: Everyday words that mean the same in a question (a general thesaurus, one group a line;
#: the first word is the one the others are read as).
SYNONYM_GROUPS = """
buy purchase
car auto automobile vehicle
lawyer attorney solicitor
doctor physician gp
movie film
book novel
job employment occupation
kid child
picture photo photograph image pic
phone cellphone smartphone mobile
house home property
flat apartment
company firm business corporate
start begin commence
end finish terminate
choose select pick
big large huge
small little tiny
fast quick rapid speedy
quickly rapidly fast
correct right accurate
error mistake
problem issue trouble
help assist assistance support
shop store
price cost fee
rule regulation
law legal statute
fix repair mend
get obtain acquire
show display
make create build
send post mail ship
package parcel
trip journey travel
hard difficult
easy simple straightforward
cheap inexpensive affordable
sick ill unwell
illness sickness disease
crash collision accident
restore recover
check verify
connect plug hook link
install setup configure add
permission consent
exam test examination
teacher tutor instructor
student pupil learner
gift present
happy glad
angry mad
sad unhappy
smart intelligent clever
stupid dumb
maybe perhaps
often frequently
usually typically normally generally
enough sufficient
whole entire
main primary principal
common usual ordinary normal regular standard typical
need require
reason cause
answer reply response
tyre tire
autumn fall
holiday vacation
""".strip()


#: Words that state a negation outright.
NEGATIONS = _set("not no never cannot without nobody nothing none neither nor nowhere")

#: Verbs whose meaning contains a negation: "stop sharing" is "no longer share",
#: "fail to rise" is "not rise", "prevent X" is "make X not happen".
NEGATIVE_VERBS = _set("""
stop stops stopped stopping cease ceased quit quitting fail fails failed failing forget forgot forgotten
refuse refused refusing avoid avoided avoiding prevent prevented preventing lack lacking lacks
prohibit prohibited prohibits forbid forbids forbidden forbade ban bans banned disallow disallowed
""")

#: Pairs of words with opposite meaning (lemma forms; inflections are matched by stem).
OPPOSITES = [
    ("enable", "disable"), ("allow", "deny"), ("allow", "block"), ("allow", "forbid"), ("allow", "ban"),
    ("permit", "forbid"), ("permit", "prohibit"), ("lock", "unlock"), ("encrypt", "decrypt"),
    ("encode", "decode"), ("install", "uninstall"), ("subscribe", "unsubscribe"), ("increase", "decrease"),
    ("increase", "reduce"), ("raise", "lower"), ("rise", "fall"), ("grow", "shrink"), ("expand", "shrink"),
    ("add", "remove"), ("add", "delete"), ("create", "delete"), ("create", "destroy"), ("insert", "remove"),
    ("start", "stop"), ("start", "end"), ("start", "finish"), ("begin", "end"), ("begin", "finish"),
    ("open", "close"), ("open", "shut"), ("buy", "sell"), ("purchase", "sell"), ("lend", "borrow"),
    ("give", "receive"), ("give", "take"), ("send", "receive"), ("import", "export"), ("upload", "download"),
    ("login", "logout"), ("connect", "disconnect"), ("attach", "detach"), ("mount", "unmount"),
    ("accept", "reject"), ("accept", "decline"), ("approve", "reject"), ("approve", "deny"),
    ("include", "exclude"), ("show", "hide"), ("grant", "revoke"), ("hire", "fire"), ("join", "leave"),
    ("arrive", "depart"), ("enter", "exit"), ("push", "pull"), ("win", "lose"), ("gain", "lose"),
    ("find", "lose"), ("save", "spend"), ("earn", "spend"), ("pass", "fail"), ("succeed", "fail"),
    ("freeze", "thaw"), ("freeze", "unfreeze"), ("pause", "resume"),
    ("compress", "decompress"), ("inflate", "deflate"), ("heat", "cool"), ("charge", "discharge"),
    ("save", "delete"), ("recover", "delete"), ("restore", "delete"), ("teach", "learn"),
    ("before", "after"), ("above", "below"), ("over", "under"), ("inside", "outside"), ("in", "out"),
    ("up", "down"), ("on", "off"), ("from", "to"), ("into", "from"),
    ("first", "last"), ("earliest", "latest"), ("early", "late"), ("earlier", "later"),
    ("ascending", "descending"), ("increasing", "decreasing"), ("forward", "backward"), ("next", "previous"),
    ("inbound", "outbound"), ("incoming", "outgoing"), ("ingress", "egress"), ("input", "output"),
    ("upstream", "downstream"), ("upper", "lower"), ("uppercase", "lowercase"), ("top", "bottom"),
    ("left", "right"), ("north", "south"), ("east", "west"), ("front", "back"), ("head", "tail"),
    ("max", "min"), ("maximum", "minimum"), ("most", "least"), ("more", "less"), ("more", "fewer"),
    ("best", "worst"), ("better", "worse"), ("high", "low"), ("higher", "lower"), ("highest", "lowest"),
    ("big", "small"), ("large", "small"), ("long", "short"), ("tall", "short"), ("wide", "narrow"),
    ("thick", "thin"), ("heavy", "light"), ("fast", "slow"), ("quick", "slow"), ("hot", "cold"),
    ("warm", "cool"), ("wet", "dry"), ("hard", "soft"), ("hard", "easy"), ("difficult", "easy"),
    ("cheap", "expensive"), ("rich", "poor"), ("old", "new"), ("old", "young"), ("new", "used"),
    ("full", "empty"), ("full", "part"), ("raw", "cooked"), ("fresh", "frozen"), ("fresh", "stale"),
    ("safe", "dangerous"), ("healthy", "unhealthy"), ("legal", "illegal"), ("possible", "impossible"),
    ("true", "false"), ("right", "wrong"), ("correct", "incorrect"), ("positive", "negative"),
    ("success", "failure"), ("profit", "loss"), ("asset", "liability"), ("credit", "debit"),
    ("income", "expense"), ("pros", "cons"), ("advantage", "disadvantage"), ("benefit", "drawback"),
    ("similarity", "difference"), ("similar", "different"), ("same", "different"), ("love", "hate"),
    ("like", "dislike"), ("agree", "disagree"), ("public", "private"), ("internal", "external"),
    ("local", "remote"), ("local", "global"), ("online", "offline"), ("manual", "automatic"),
    ("official", "unofficial"), ("formal", "informal"), ("active", "inactive"), ("visible", "hidden"),
    ("men", "women"), ("man", "woman"), ("male", "female"), ("boy", "girl"), ("husband", "wife"),
    ("mother", "father"), ("son", "daughter"), ("brother", "sister"), ("adult", "child"), ("adult", "kid"),
    ("parent", "child"), ("teacher", "student"), ("employer", "employee"), ("landlord", "tenant"),
    ("buyer", "seller"), ("seller", "customer"), ("sender", "recipient"), ("sender", "receiver"),
    ("client", "server"), ("host", "guest"), ("winner", "loser"), ("plaintiff", "defendant"),
    ("borrower", "lender"), ("debtor", "creditor"), ("doctor", "patient"), ("owner", "renter"),
    ("day", "night"), ("morning", "evening"), ("summer", "winter"), ("spring", "autumn"), ("spring", "fall"),
    ("past", "future"), ("yesterday", "tomorrow"), ("ancient", "modern"), ("weekday", "weekend"),
    ("single", "married"), ("single", "double"), ("alive", "dead"), ("sweet", "sour"), ("win", "loss"),
]

#: Prefixes that turn a word into its opposite (dis-connect, un-lock, non-smoker, over-/under-fit).
NEGATING_PREFIXES = ("un", "dis", "non", "de", "in", "im", "il", "ir", "anti", "mis")
OPPOSITE_PREFIXES = (("over", "under"), ("pre", "post"), ("up", "down"), ("in", "out"), ("inter", "intra"),
                     ("im", "ex"), ("en", "de"), ("max", "min"), ("super", "sub"), ("multi", "single"))
#: A prefix that asks about doing a thing again: "refreeze" is not "freeze".
REPEAT_PREFIXES = ("re",)

#: Comparative forms and the words that build comparisons: "more than", "too much", "over the limit".
COMPARATIVES = _set("""
more less fewer better worse than too exceed exceeds exceeding exceeded beyond
higher lower bigger smaller larger longer shorter faster slower cheaper dearer quicker earlier later
older newer younger stronger weaker safer riskier easier harder heavier lighter hotter colder warmer cooler
wider narrower thicker thinner deeper shallower greater lesser richer poorer healthier closer further farther
""")

#: Prepositions that make a comparison when a number or a limit follows: "over 65", "over the limit".
THRESHOLD_PREPS = _set("over under above below exceed exceeds exceeding exceeded beyond within")
LIMIT_WORDS = _set("limit limits maximum minimum max min cap threshold allowance")

#: Superlatives compared only against their opposites; "the best way to" is mostly a figure of speech.
SUPERLATIVES = _set("""
best worst most least highest lowest biggest smallest largest longest shortest fastest slowest cheapest
earliest latest oldest newest youngest safest easiest hardest maximum minimum max min
""")

#: Quantifiers that widen or narrow a question's scope: "every laptop", "only", "both".
QUANTIFIERS = _set("""
all every each entire whole everyone everybody everything both only alone multiple several
""")

#: People and bodies who act or are acted upon: a question about what the landlord must do
#: is not one about what the tenant must do, however it is worded.
ROLES = _set("""
landlord landlady tenant renter lodger roommate flatmate neighbor neighbour owner homeowner
employer employee boss manager supervisor colleague coworker staff worker contractor freelancer recruiter
applicant candidate intern insurer policyholder broker agent lender borrower bank banker creditor debtor
buyer seller vendor supplier customer client user admin administrator moderator developer technician
teacher professor tutor student pupil parent child kid baby son daughter husband wife spouse partner
friend family doctor physician nurse patient pharmacist dentist vet lawyer attorney solicitor judge jury
police officer court government council authority regulator irs hmrc school university college
driver passenger pilot host guest member attendee participant speaker audience caller recipient sender
""")

#: Markers of a question about the past ("was", "did", "last year", "used to", "back in").
PAST_AUXILIARIES = _set("was were did didn wasn weren")
PAST_PHRASES = (("last", "year"), ("last", "month"), ("last", "week"), ("last", "season"), ("used", "to"),
                ("back", "in"), ("in", "the", "past"), ("previously",), ("originally",), ("formerly",),
                ("historically",), ("first", "introduced"))
#: Auxiliaries whose form carries the tense of the question they open.
AUXILIARIES = _set("""
is are am was were do does did have has had will would can could shall should may might must
isn aren wasn weren doesn don didn haven hasn hadn won wouldn couldn shouldn
""")

#: Question words and the intent each one opens.
WH = {"why": "reason", "where": "place", "who": "person", "whom": "person", "whose": "person",
      "when": "time", "which": "what", "what": "what"}
#: "how <word>" asks for a quantity of a dimension; the rest of "how …" asks for a manner or procedure.
HOW_DIMENSIONS = {
    "much": "amount", "many": "count", "long": "duration", "soon": "duration", "quickly": "duration",
    "fast": "speed", "far": "distance", "often": "frequency", "frequently": "frequency", "big": "size",
    "large": "size", "small": "size", "heavy": "weight", "tall": "size", "high": "size", "deep": "size",
    "old": "age", "hot": "temperature", "cold": "temperature", "warm": "temperature", "early": "time",
    "late": "time",
}
#: Auxiliaries that open a yes/no question.
YES_NO = _set("""
can could may might must shall should will would do does did is are was were am have has had
isn aren doesn don didn wasn weren won wouldn shouldn couldn cannot
""")
#: Openers that only wrap a question ("can you tell me how …", "explain …").
WRAPPERS = _set("tell explain describe show walk guide help please let give know")
#: Nouns that make "what is the …" a quantity question.
DIMENSION_NOUNS = {
    "cost": "amount", "price": "amount", "fee": "amount", "fees": "amount", "amount": "amount",
    "number": "count", "count": "count", "time": "duration", "duration": "duration", "period": "duration",
    "deadline": "time", "date": "time", "day": "time", "consequence": "consequence", "consequences": "consequence",
    "outcome": "consequence", "result": "consequence", "results": "consequence", "penalty": "consequence", "distance": "distance", "speed": "speed",
    "frequency": "frequency", "size": "size", "weight": "weight", "age": "age", "temperature": "temperature",
}
#: Words that name the dimension a quantity question asks about; when both questions ask
#: about the same dimension, "how long does it take" and "what is the time" agree.
DIMENSION_WORDS: dict[str, frozenset[str]] = {}
for _dim, _words in {
    "amount": "cost costs price prices priced fee fees much amount pay pays paid spend",
    "count": "number count many total",
    "duration": "long time duration period length take takes took soon quickly",
    "time": "date day deadline time",
    "distance": "far distance",
    "speed": "fast speed quickly",
    "frequency": "often frequently frequency",
    "size": "big large size",
    "weight": "heavy weight",
    "temperature": "hot cold warm temperature temp",
    "age": "old age",
    "consequence": "consequence consequences outcome outcomes result results happen happens",
}.items():
    for _w in _words.split():
        DIMENSION_WORDS[_w] = DIMENSION_WORDS.get(_w, frozenset()) | {_dim}
#: Words that make a question a comparison of two things.
DIFFERENCE = _set("difference differences differ differs distinguish distinguishes vs versus compare compared")
#: Words that make a question a procedure ("what are the steps to …").
PROCEDURE = _set("steps step process procedure instructions way ways method methods tips tip advice")

#: Units, each mapped to one canonical name; a number's unit is part of the number.
UNITS = {}
for _canon, _names in {
    "kg": "kg kgs kilo kilos kilogram kilograms kilogramme kilogrammes",
    "g": "g gram grams gramme grammes gr",
    "mg": "mg milligram milligrams",
    "lb": "lb lbs pound pounds",
    "oz": "oz ounce ounces",
    "km": "km kms kilometer kilometers kilometre kilometres",
    "m": "meter meters metre metres",
    "cm": "cm centimeter centimeters centimetre centimetres",
    "mm": "mm millimeter millimeters millimetre millimetres",
    "mi": "mi mile miles",
    "ft": "ft foot feet",
    "inch": "inch inches",
    "yd": "yd yard yards",
    "l": "l liter liters litre litres",
    "ml": "ml milliliter milliliters millilitre millilitres",
    "gal": "gal gallon gallons",
    "qt": "qt quart quarts",
    "pt": "pint pints",
    "cup": "cup cups",
    "tbsp": "tbsp tablespoon tablespoons",
    "tsp": "tsp teaspoon teaspoons",
    "c": "c celsius centigrade",
    "f": "f fahrenheit",
    "kwh": "kwh",
    "kw": "kw kilowatt kilowatts",
    "w": "w watt watts",
    "v": "v volt volts",
    "mph": "mph",
    "kph": "kph kmh",
    "gb": "gb gigabyte gigabytes",
    "mb": "mb megabyte megabytes",
    "tb": "tb terabyte terabytes",
    "kb": "kb kilobyte kilobytes",
    "ms": "ms millisecond milliseconds",
    "sec": "sec secs seconds",
    "min": "mins minute minutes",
    "hour": "hr hrs hour hours",
    "day": "day days",
    "week": "wk wks week weeks",
    "month": "mo month months",
    "year": "yr yrs year years",
    "usd": "usd dollar dollars $ buck bucks",
    "eur": "eur euro euros €",
    "gbp": "gbp sterling quid £",
    "jpy": "jpy yen ¥",
    "inr": "inr rupee rupees ₹",
    "cny": "cny yuan rmb renminbi",
    "chf": "chf franc francs",
    "cad": "cad",
    "aud": "aud",
    "pct": "% percent percentage pc",
}.items():
    for _name in _names.split():
        UNITS[_name] = _canon
#: Currency units count even without a number: "price in euros" is not "price in dollars".
CURRENCIES = frozenset("usd eur gbp jpy inr cny chf cad aud".split())

NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()) if w != "_"}
NUMBER_WORDS.update(twenty="20", thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80",
                    ninety="90", hundred="100", thousand="1000", million="1000000", billion="1000000000",
                    first="1st", second="2nd", third="3rd", fourth="4th", fifth="5th", sixth="6th",
                    seventh="7th", eighth="8th", ninth="9th", tenth="10th", twice="2x", thrice="3x",
                    double="2x", triple="3x", half="0.5", quarter="0.25", dozen="12", couple="2")
MONTHS = _set("january february march april may june july august september october november december "
              "jan feb mar apr jun jul aug sep sept oct nov dec")
DAYS = _set("monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday tonight weekend")
