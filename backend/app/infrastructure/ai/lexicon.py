"""English word lists for the local engine, kept in one place so they can be reviewed and tuned.

Sized for a teaching reference (a few hundred words each), not for coverage: a word that is not
listed here carries no sentiment and counts as content.
"""

from typing import Final


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS: Final = _words(
    """
    a about above across after afterwards again against all almost alone along already also
    although always am among an and another any anybody anyone anything anyway anywhere are
    around as at be became because become becomes been before being below beside besides between
    beyond both but by can cannot could did do does doing done down during each either else
    enough etc even ever every everyone everything everywhere except few for from further had
    has have having he her here hers herself him himself his how however i if in into is it its
    itself just least less let lets many may me might mine more most much must my myself neither
    never nevertheless no nobody none nor not nothing now of off often on once one only onto or
    other others otherwise our ours ourselves out over own per perhaps please put rather re same
    see seem seemed seeming seems several she should since so some somehow someone something
    sometime sometimes somewhere still such than that the their theirs them themselves then
    there thereby therefore these they this those though through throughout thus to together too
    toward towards under until up upon us use used uses using very via was we well were what
    whatever when whenever where whereas wherever whether which while who whoever whole whom
    whose why will with within without would yet you your yours yourself yourselves
    s t d ll m o ve y ain aren couldn didn doesn don hadn hasn haven isn mightn mustn
    needn shan shouldn wasn weren won wouldn aren't can't couldn't didn't doesn't don't hadn't
    hasn't haven't isn't mightn't mustn't needn't shan't shouldn't wasn't weren't won't wouldn't
    i'm i've i'd i'll you're you've you'd you'll he's she's it's we're we've we'd we'll they're
    they've they'd they'll that's there's here's what's who's let's
    get gets got make makes made say says said go goes went gone like really quite
    """
)

# Words that only shape a question, so they must not count as things the answer should contain.
QUESTION_WORDS: Final = _words(
    "what which who whom whose when where why how does do did is are was were can could should "
    "would will shall may might must tell explain describe text say says according mention long far"
)

COPULAS: Final = frozenset({"is", "are", "was", "were"})

# The only stopwords a question's subject may start with: "The cache is" makes "What is the
# cache?", while "It is", "This is" or "And so it is" point elsewhere and make no question.
DETERMINERS: Final = _words("the a an our my your")

PREPOSITIONS: Final = _words("for by in to with on at from as of into onto about over under")

IRREGULAR_PARTICIPLES: Final = _words(
    """
    made done built known given taken written shown seen found held kept sent paid said told
    bought brought thought taught caught chosen driven broken spoken stolen frozen hidden
    forgotten begun drawn grown thrown worn born led left lost meant met sold spent run set put
    understood won struck hung fed fought
    """
)

# Verbs that report or judge, in the present tense and irregular pasts not listed above
# (regular "-ed" forms are known by their ending). Inside "Critics say the budget is ..." such a
# verb shows that the copula belongs to a clause, not to the sentence's subject.
CLAUSE_VERBS: Final = _words(
    """
    say says claim claims argue argues think thinks believe believes report reports show shows
    suggest suggests note notes warn warns expect expects know knows knew feel feels felt find
    finds hope hopes fear fears insist insists admit admits agree agrees mean means
    """
)

# Abbreviations whose full stop does not end a sentence ("Dr. Smith", "e.g. this").
ABBREVIATIONS: Final = _words(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf al inc ltd co corp fig approx dept est a.m p.m"
)

NEGATORS: Final = _words(
    """
    not no never none nobody nothing neither nor nowhere cannot without hardly scarcely
    aint dont doesnt didnt isnt arent wasnt werent cant couldnt wont wouldnt shouldnt hasnt
    havent hadnt
    """
)

_BOOSTERS = """
    very really extremely incredibly absolutely totally completely utterly highly so too super
    truly deeply especially exceptionally remarkably particularly thoroughly
    """

# Multipliers for the sentiment word that follows: above 1 amplifies, below 1 softens.
INTENSIFIERS: Final[dict[str, float]] = {
    **dict.fromkeys(_words(_BOOSTERS), 1.5),
    **dict.fromkeys(_words("most quite pretty fairly rather"), 1.25),
    **dict.fromkeys(_words("slightly somewhat barely marginally little mildly partly"), 0.5),
}

# "like" is a preference only after one of these ("I like it", "don't like"), not in "looks like".
LIKE_WORDS: Final = frozenset({"like", "likes"})
LIKE_VALENCE: Final = 2.0
LIKE_OPENERS: Final = _words(
    "i we you they he she people everyone really also just still totally do does did would not"
)

# Clause after the contrast word carries the writer's verdict ("good, but slow" is negative).
CONTRAST_WORDS: Final = frozenset({"but", "however"})
CONTRAST_BEFORE_WEIGHT: Final = 0.5
CONTRAST_AFTER_WEIGHT: Final = 1.5

_POSITIVE_STRONG = """
    excellent amazing awesome outstanding superb wonderful fantastic brilliant perfect love loved
    loves adore exceptional magnificent phenomenal incredible marvelous marvellous delightful
    flawless terrific spectacular best masterpiece stunning superior glorious ecstatic thrilled
    """
_POSITIVE = """
    good great nice happy glad pleased enjoy enjoyed enjoyable pleasant satisfied satisfying fast
    reliable helpful useful easy beautiful fun recommend recommended impressive impressed
    effective efficient friendly comfortable clean clear smooth solid strong success successful
    win wins winner benefit beneficial better improve improved improvement positive favorite
    favourite valuable worth worthwhile gorgeous lovely generous elegant intuitive robust
    secure safe stable convenient affordable accurate correct fresh tasty delicious cool calm
    excited exciting grateful thankful thanks appreciate appreciated polite professional quick
    responsive seamless simple powerful praise praised proud fortunate lucky brave honest fair
    charming wow yay hopeful promising rewarding liked
    """
_NEGATIVE_STRONG = """
    terrible horrible awful worst hate hated hates disgusting dreadful atrocious abysmal
    appalling pathetic useless garbage trash disaster disastrous horrendous furious miserable
    nightmare unacceptable scam fraud toxic catastrophic unbearable despise
    """
_NEGATIVE = """
    bad poor sad angry annoyed annoying disappointed disappointing disappointment slow broken
    bug buggy buggier crash crashes crashed fail failed fails failure error errors wrong worse
    difficult confusing confused complicated ugly dirty rude unhelpful unreliable unstable
    expensive overpriced problem problems issue issues complaint complain complained lose loss
    lost weak boring bored dull frustrating frustrated frustration upset unhappy unfortunately
    mediocre painful pain hurt risky dangerous unsafe insecure vulnerable leak leaks flaw flawed
    defect defective outdated clunky laggy sluggish noisy tedious stressful stressed worried
    worry fear afraid scared nasty mess messy sloppy lazy inaccurate incorrect late delay
    delayed missing regret sorry waste wasted fake hostile harsh bland stale unclear
    """

_POSITIVE_WEAK = "fine okay ok decent adequate acceptable reasonable"
_NEGATIVE_WEAK = "meh odd strange unusual"

# Valence per word: strong words weigh more so one "excellent" outweighs one "slow".
VALENCE: Final[dict[str, float]] = {
    **dict.fromkeys(_words(_POSITIVE_WEAK), 1.0),
    **dict.fromkeys(_words(_POSITIVE), 2.0),
    **dict.fromkeys(_words(_POSITIVE_STRONG), 3.0),
    **dict.fromkeys(_words(_NEGATIVE_WEAK), -1.0),
    **dict.fromkeys(_words(_NEGATIVE), -2.0),
    **dict.fromkeys(_words(_NEGATIVE_STRONG), -3.0),
}

EMOJI_VALENCE: Final[dict[str, float]] = {
    **dict.fromkeys("😀😃😄😁😊🙂😍🥰😘🤩👍👏🎉💯✨❤💖💕😎🙌✅⭐🌟", 2.0),
    **dict.fromkeys("😞😢😭😡😠🤬👎💔😤😩😫🙁☹😒😖😣😕🤮💩❌", -2.0),
}
