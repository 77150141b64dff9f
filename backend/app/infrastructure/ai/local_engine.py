"""The offline `local` model: five text operations from word statistics and small word lists.

It is an honest heuristic, not an LLM. It picks and matches sentences from the text (extractive);
it does not understand, paraphrase or reason, and its English word lists know nothing of other
languages (which still get word-frequency results). In exchange it is deterministic, needs no
network or third-party package, and answers in milliseconds, so the service works offline.
"""

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Literal, NamedTuple

from shared.text import (
    AnswerResult,
    KeyPointsResult,
    QuestionsResult,
    SentimentResult,
    SummaryResult,
)

from app.infrastructure.ai import lexicon

NOT_FOUND_ANSWER = "The text does not say."
FALLBACK_QUESTION = "What is the main point of the text?"

# A run-on text (no sentence punctuation) is cut into windows so a summary can still be shorter.
MAX_SENTENCE_WORDS = 80
WINDOW_WORDS = 40

POSITION_WEIGHT = 0.2  # earlier sentences tend to carry the topic
LEAD_BONUS = 0.2  # the first sentence most of all
NEAR_DUPLICATE_OVERLAP = 0.6  # shared content words above which two sentences say the same

NEGATION_FACTOR = -0.75  # "not good" is weaker than "bad", as in VADER
NEGATION_WINDOW = 3
SCORE_ALPHA = 15.0  # VADER's normalisation: one strong word gives a clear but not extreme score
NEUTRAL_THRESHOLD = 0.1
EVIDENCE_HALF = 4.0  # sentiment mass at which the evidence counts as half of certainty

MAX_PHRASE_WORDS = 4
MAX_PHRASE_CHARS = 60  # longer "phrases" are code or a run-on token, useless in a question
MAX_SUBJECT_WORDS = 6

MIN_ANSWER_COVERAGE = 0.3
MAX_ANSWER_CONFIDENCE = 0.95  # sharing words with the question is never proof of an answer

CACHED_WORD_CHARS = 40

SentimentLabel = Literal["positive", "negative", "neutral"]

# Escapes, not literal characters: curly quotes and full-width marks look like ASCII ones.
_APOSTROPHE = "\u2019"
_CLOSERS = "]\"')\u201d\u2019\u300d\u300f"  # quotes and brackets that may follow a full stop
_FULL_STOPS = "\u3002\uff01\uff1f\u061f\u0964"  # CJK, Arabic and Devanagari sentence ends
_NO_SPACE_AFTER = ("\u3002", "\uff01", "\uff1f")
_WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")
_BOUNDARY = re.compile(f"[.!?\u2026]+[{_CLOSERS}]*(?=\\s)|[{_FULL_STOPS}]+[{_CLOSERS}]*")
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
_BULLET = re.compile(r"^(?:[-*>\u2022\u00b7\u2013\u2014]+|\d{1,3}[.)])\s+")
_EMOJI = re.compile("[" + "".join(lexicon.EMOJI_VALENCE) + "]")


class _Token(NamedTuple):
    surface: str
    folded: str
    stem: str
    content: bool
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Sentence:
    index: int
    text: str
    tokens: tuple[_Token, ...]
    stems: tuple[str, ...]  # content words only, in order, repeats kept
    stem_set: frozenset[str]


@dataclass(slots=True)
class _Phrase:
    key: tuple[str, ...]
    surface: str
    first: int
    before: tuple[str, ...]  # the (up to) two words before its first occurrence, folded
    count: int = 0
    sentences: list[int] = field(default_factory=list)
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class _Document:
    sentences: list[_Sentence]
    lowercase_words: frozenset[str]  # surfaces seen in lower case, to decapitalise sentence starts


# --- Public operations -------------------------------------------------------------------------


def summarize(text: str, max_sentences: int = 3) -> SummaryResult:
    """The top-scoring sentences (frequent content words, early position), in original order."""
    sentences = _analyse(text).sentences
    limit = max(max_sentences, 0)
    scores = _salience(sentences)
    ranked = sorted(sentences, key=lambda s: (-scores[s.index], s.index))
    chosen: list[_Sentence] = []
    for sentence in ranked:
        if len(chosen) == limit:
            break
        if not _near_duplicate(sentence, chosen):
            chosen.append(sentence)
    chosen.sort(key=lambda s: s.index)
    return SummaryResult(summary=_join(s.text for s in chosen))


def sentiment(text: str) -> SentimentResult:
    """Lexicon valences, flipped by negation, scaled by intensifiers and contrast ("but")."""
    total = 0.0
    mass = 0.0
    for sentence in _analyse(text).sentences:
        for value in _sentence_valences(sentence):
            total += value
            mass += abs(value)
    for emoji in _EMOJI.findall(text):
        value = lexicon.EMOJI_VALENCE[emoji]
        total += value
        mass += abs(value)

    score = max(-1.0, min(1.0, total / math.sqrt(total * total + SCORE_ALPHA)))
    label = _label(score)
    evidence = mass / (mass + EVIDENCE_HALF)
    agreement = abs(total) / mass if mass else 0.0
    if label == "neutral":
        # Mixed evidence supports "neutral"; an absence of evidence supports nothing.
        confidence = evidence * (1.0 - agreement)
    else:
        confidence = evidence * (0.5 + 0.5 * agreement)
    return SentimentResult(
        sentiment=label,
        score=round(score, 4),
        confidence=round(max(0.0, min(1.0, confidence)), 4),
    )


def key_points(text: str, max_points: int = 5) -> KeyPointsResult:
    """Sentences covering the best key phrases (RAKE scoring), most informative first.

    Each pick discounts the phrases it already covers, so later points add something new.
    """
    sentences = _analyse(text).sentences
    phrases = _extract_phrases(sentences)
    by_sentence: dict[int, list[_Phrase]] = {s.index: [] for s in sentences}
    for phrase in phrases.values():
        for index in phrase.sentences:
            by_sentence[index].append(phrase)

    limit = max(max_points, 0)
    candidates = [s for s in sentences if s.stems]
    covered: set[tuple[str, ...]] = set()
    chosen: list[_Sentence] = []
    while len(chosen) < limit and candidates:
        best: _Sentence | None = None
        best_gain = 0.0
        for sentence in candidates:
            fresh = sum(p.score for p in by_sentence[sentence.index] if p.key not in covered)
            gain = fresh / math.sqrt(len(sentence.stems))
            if gain > best_gain:
                best, best_gain = sentence, gain
        if best is None:
            break
        candidates.remove(best)
        if not _near_duplicate(best, chosen):
            chosen.append(best)
            covered.update(p.key for p in by_sentence[best.index])
    return KeyPointsResult(key_points=[s.text for s in chosen])


def questions(text: str, max_questions: int = 3) -> QuestionsResult:
    """Questions: "What is X?" from salient "X is Y" sentences, then from key phrases."""
    document = _analyse(text)
    sentences = document.sentences
    limit = max(max_questions, 0)
    found: list[str] = []
    seen: set[str] = set()
    asked: set[str] = set()

    def add(question: str, stems: tuple[str, ...]) -> None:
        if question.casefold() not in seen:
            seen.add(question.casefold())
            asked.update(stems)
            found.append(question)

    scores = _salience(sentences)
    for sentence in sorted(sentences, key=lambda s: (-scores[s.index], s.index)):
        if len(found) >= limit:
            break
        definition = _definition_question(sentence, document.lowercase_words)
        if definition is not None:
            add(*definition)
    ranked = sorted(_extract_phrases(sentences).values(), key=lambda p: (-p.score, p.first))
    for phrase in ranked:
        if len(found) >= limit:
            break
        # One question per topic: skip a phrase that is mostly words already asked about.
        is_new = len(set(phrase.key) & asked) * 2 < len(phrase.key)
        topic = _topic(phrase, document.lowercase_words)
        if is_new and topic is not None and len(phrase.surface) <= MAX_PHRASE_CHARS:
            add(f"What does the text say about {topic}?", phrase.key)
    if not found and any(s.stems for s in sentences):
        found.append(FALLBACK_QUESTION)
    return QuestionsResult(questions=found[:limit])


def answer(text: str, question: str) -> AnswerResult:
    """The sentence sharing the most (rarity-weighted) content words with the question."""
    sentences = _analyse(text).sentences
    terms = list(
        dict.fromkeys(
            token.stem
            for token in _tokens(question)
            if token.content and token.folded not in lexicon.QUESTION_WORDS
        )
    )
    if not terms or not sentences:
        return _not_found()

    document_frequency = Counter(stem for s in sentences for stem in s.stem_set)
    # A question word missing from the text weighs most: its absence is the strongest signal.
    weights = {t: math.log((len(sentences) + 1) / (document_frequency[t] + 0.5)) for t in terms}
    total = sum(weights.values())

    best: _Sentence | None = None
    best_key = (0.0, False)
    for sentence in sentences:
        coverage = sum(weights[t] for t in terms if t in sentence.stem_set) / total
        # On a tie, prefer the sentence that is about the term (it appears near the start).
        opening = {token.stem for token in sentence.tokens[:3]}
        key = (coverage, any(t in opening for t in terms))
        if coverage > 0 and key > best_key:
            best, best_key = sentence, key
    if best is None or best_key[0] < MIN_ANSWER_COVERAGE:
        return _not_found()
    confidence = round(min(MAX_ANSWER_CONFIDENCE, best_key[0]), 4)
    return AnswerResult(answer=best.text, confidence=confidence, evidence=best.text)


# --- Text analysis -----------------------------------------------------------------------------


def _analyse(text: str) -> _Document:
    sentences: list[_Sentence] = []
    lowercase: set[str] = set()
    for index, sentence_text in enumerate(_split_sentences(text)):
        tokens = tuple(_tokens(sentence_text))
        stems = tuple(t.stem for t in tokens if t.content)
        sentences.append(_Sentence(index, sentence_text, tokens, stems, frozenset(stems)))
        lowercase.update(t.surface for t in tokens if t.surface.islower())
    return _Document(sentences, frozenset(lowercase))


def _split_sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for block in _blocks(text):
        for sentence in _split_block(block):
            pieces.extend(_windows(sentence))
    return pieces


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items; a single line break inside prose is only a hard wrap."""
    blocks: list[str] = []
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    for paragraph in _PARAGRAPH.split(normalised):
        current: list[str] = []
        for line in paragraph.split("\n"):
            stripped = line.strip()
            if not stripped:
                continue
            item = _BULLET.match(stripped)
            # Upper case or an uncased script (CJK, Arabic) starts a line; lower case continues one.
            first = stripped[0]
            starts_new = item is not None or (first.isalpha() and not first.islower())
            if current and (starts_new or current[-1].endswith(":")):
                blocks.append(" ".join(current))
                current = []
            current.append(stripped[item.end() :] if item else stripped)
        if current:
            blocks.append(" ".join(current))
    return blocks


def _split_block(block: str) -> list[str]:
    normalised = " ".join(block.split())
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(normalised):
        end = match.end()
        if _continues(normalised[start:end], normalised[end:], match.group()):
            continue
        pieces.append(normalised[start:end].strip())
        start = end
    pieces.append(normalised[start:].strip())
    return [piece for piece in pieces if piece]


def _continues(candidate: str, rest: str, mark: str) -> bool:
    """Whether a full stop is not a sentence end: an abbreviation ("e.g.") or an initial."""
    if not rest.strip() or not mark.startswith("."):
        return False
    words = candidate.rstrip("." + _CLOSERS).split()
    last = words[-1].casefold() if words else ""
    # A lone letter is an initial ("J. Smith"), except "I", which often ends a sentence.
    return last in lexicon.ABBREVIATIONS or (len(last) == 1 and last.isalpha() and last != "i")


def _windows(sentence: str) -> list[str]:
    words = sentence.split()
    if len(words) <= MAX_SENTENCE_WORDS:
        return [sentence]
    size = math.ceil(len(words) / math.ceil(len(words) / WINDOW_WORDS))
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _WORD.finditer(text):
        surface = match.group()
        folded, stem, content = _word_info(surface)
        tokens.append(_Token(surface, folded, stem, content, match.start(), match.end()))
    return tokens


def _word_info(surface: str) -> tuple[str, str, bool]:
    # Texts repeat their words, so caching pays; long "words" are not cached, to bound memory.
    if len(surface) > CACHED_WORD_CHARS:
        return _fold_and_stem(surface)
    return _cached_word_info(surface)


def _fold_and_stem(surface: str) -> tuple[str, str, bool]:
    """Folded form, stem and whether it is a content word."""
    folded = surface.casefold().replace(_APOSTROPHE, "'")
    if folded.endswith("'s"):
        folded = folded[:-2]
    return folded, _stem(folded), _is_content(folded)


_cached_word_info = lru_cache(maxsize=16_384)(_fold_and_stem)


def _is_content(folded: str) -> bool:
    return (
        folded not in lexicon.STOPWORDS
        and not folded.isdigit()
        and bool(folded.strip("_"))
        and (len(folded) > 1 or not folded.isascii())
    )


def _stem(word: str) -> str:
    """A light suffix stripper: "caches", "cached", "caching" and "cache" all become "cach".

    Consistency matters more than linguistic accuracy: both sides of a comparison go through it.
    """
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in "aeiouslz":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _join(sentences: Iterable[str]) -> str:
    """Sentences separated by a space, except after a CJK full stop, where none is written."""
    joined = ""
    for sentence in sentences:
        if joined and not joined.endswith(_NO_SPACE_AFTER):
            joined += " "
        joined += sentence
    return joined


def _near_duplicate(sentence: _Sentence, chosen: list[_Sentence]) -> bool:
    for other in chosen:
        if sentence.text.casefold() == other.text.casefold():
            return True
        union = sentence.stem_set | other.stem_set
        overlap = len(sentence.stem_set & other.stem_set) / len(union) if union else 0.0
        if overlap >= NEAR_DUPLICATE_OVERLAP:
            return True
    return False


def _salience(sentences: list[_Sentence]) -> dict[int, float]:
    frequency = Counter(stem for s in sentences for stem in s.stems)
    top = max(frequency.values(), default=1)
    count = len(sentences)
    scores: dict[int, float] = {}
    for sentence in sentences:
        if not sentence.stems:
            scores[sentence.index] = 0.0
            continue
        # sqrt, not mean: a long sentence should not lose to a three-word one by dilution alone.
        content = sum(frequency[s] / top for s in sentence.stems) / math.sqrt(len(sentence.stems))
        position = 1.0 + POSITION_WEIGHT * (1.0 - sentence.index / count)
        if sentence.index == 0:
            position += LEAD_BONUS
        scores[sentence.index] = content * position
    return scores


# --- Sentiment ---------------------------------------------------------------------------------

_STEM_VALENCE = {_stem(word): value for word, value in lexicon.VALENCE.items()}
_INFLECTIONS = ("s", "ed", "ing", "ly")


def _label(score: float) -> SentimentLabel:
    if score > NEUTRAL_THRESHOLD:
        return "positive"
    if score < -NEUTRAL_THRESHOLD:
        return "negative"
    return "neutral"


def _sentence_valences(sentence: _Sentence) -> list[float]:
    words = [t.folded for t in sentence.tokens]
    contrast = next((i for i, w in enumerate(words) if w in lexicon.CONTRAST_WORDS), None)
    values: list[float] = []
    for i, token in enumerate(sentence.tokens):
        base = _base_valence(token, words[i - 1] if i > 0 else "")
        if base is None:
            continue
        value = base
        for distance in (1, 2):
            j = i - distance
            if j >= 0 and words[j] in lexicon.INTENSIFIERS:
                factor = lexicon.INTENSIFIERS[words[j]]
                # A modifier two words back ("very, very good") counts half as much.
                value *= factor if distance == 1 else 1.0 + (factor - 1.0) / 2
        if _negated(sentence, i):
            value *= NEGATION_FACTOR
        if contrast is not None and i != contrast:
            after = i > contrast
            value *= lexicon.CONTRAST_AFTER_WEIGHT if after else lexicon.CONTRAST_BEFORE_WEIGHT
        values.append(value)
    return values


def _base_valence(token: _Token, previous: str) -> float | None:
    if token.folded in lexicon.LIKE_WORDS:
        prefers = previous in lexicon.LIKE_OPENERS or previous.endswith("n't")
        return lexicon.LIKE_VALENCE if prefers else None
    base = lexicon.VALENCE.get(token.folded)
    # Only an inflected form falls back to its stem: "loving" is "love", but "hat" is not "hate".
    if base is None and token.folded.endswith(_INFLECTIONS):
        base = _STEM_VALENCE.get(token.stem)
    return base


def _negated(sentence: _Sentence, index: int) -> bool:
    """A negator within a few words before, not across punctuation or a contrast word."""
    tokens = sentence.tokens
    for j in range(index - 1, max(index - 1 - NEGATION_WINDOW, -1), -1):
        if sentence.text[tokens[j].end : tokens[j + 1].start].strip():
            return False
        word = tokens[j].folded
        if word in lexicon.CONTRAST_WORDS:
            return False
        if word in lexicon.NEGATORS or word.endswith("n't"):
            return True
    return False


# --- Key phrases and questions -----------------------------------------------------------------


def _extract_phrases(sentences: list[_Sentence]) -> dict[tuple[str, ...], _Phrase]:
    """RAKE: runs of content words between stopwords and punctuation, scored by degree/frequency."""
    phrases: dict[tuple[str, ...], _Phrase] = {}
    for sentence in sentences:
        for run in _content_runs(sentence):
            for k in range(0, len(run), MAX_PHRASE_WORDS):
                chunk = run[k : k + MAX_PHRASE_WORDS]
                key = tuple(t.stem for t in chunk)
                phrase = phrases.get(key)
                if phrase is None:
                    surface = sentence.text[chunk[0].start : chunk[-1].end]
                    at = sentence.tokens.index(chunk[0])
                    before = tuple(t.folded for t in sentence.tokens[max(0, at - 2) : at])
                    phrase = phrases[key] = _Phrase(key, surface, len(phrases), before)
                phrase.count += 1
                if sentence.index not in phrase.sentences:
                    phrase.sentences.append(sentence.index)

    frequency: Counter[str] = Counter()
    degree: Counter[str] = Counter()
    for phrase in phrases.values():
        for stem in phrase.key:
            frequency[stem] += phrase.count
            degree[stem] += phrase.count * len(phrase.key)
    for phrase in phrases.values():
        word_scores = sum(degree[stem] / frequency[stem] for stem in phrase.key)
        # Plain RAKE ignores repetition; a phrase the text keeps returning to matters more.
        phrase.score = word_scores * (1.0 + math.log(phrase.count))
    return phrases


def _content_runs(sentence: _Sentence) -> list[list[_Token]]:
    runs: list[list[_Token]] = []
    current: list[_Token] = []
    for token in sentence.tokens:
        broken = bool(current) and bool(sentence.text[current[-1].end : token.start].strip())
        if not token.content or broken:
            if current:
                runs.append(current)
            current = []
        if token.content:
            current.append(token)
    if current:
        runs.append(current)
    return runs


def _definition_question(
    sentence: _Sentence, lowercase_words: frozenset[str]
) -> tuple[str, tuple[str, ...]] | None:
    """ "X is Y" becomes "What is X?"; "X is stored in Y" becomes "What is X stored in?"."""
    tokens = sentence.tokens
    if sentence.text.endswith("?"):
        return None
    copula = next(
        (i for i, t in enumerate(tokens[: MAX_SUBJECT_WORDS + 1]) if t.folded in lexicon.COPULAS),
        None,
    )
    if copula is None or copula == 0 or copula + 1 >= len(tokens):
        return None
    subject = tokens[:copula]
    opener = subject[0]
    if not any(t.content for t in subject):
        return None
    if not opener.content and opener.folded not in lexicon.DETERMINERS:
        return None
    # Only a plain run of words: "However, the cache is" or "(the) cache" is not a clean subject.
    if sentence.text[: subject[0].start].strip() or any(
        sentence.text[a.end : b.start].strip() for a, b in pairwise(tokens[: copula + 1])
    ):
        return None

    # A noun phrase only: a verb ("Critics said the budget was") or a second article ("The
    # report shows the economy is") inside it means the copula belongs to a clause of its own.
    if any(t.folded in lexicon.DETERMINERS or _is_verb(t.folded) for t in subject[1:]):
        return None

    verb = tokens[copula].folded
    subject_text = _decapitalise(sentence.text[subject[0].start : subject[-1].end], lowercase_words)
    stems = tuple(t.stem for t in subject if t.content)
    following = tokens[copula + 1 :]
    if following[0].folded == "not" and len(following) > 1:
        following = following[1:]
    participle = following[0]
    if participle.folded.endswith("ing"):
        return None  # "The service is running": "What is the service?" would miss the point
    if not _is_participle(participle.folded):
        return f"What {verb} {subject_text}?", stems
    if len(following) > 1 and following[1].folded in lexicon.PREPOSITIONS:
        preposition = following[1].folded
        return f"What {verb} {subject_text} {participle.folded} {preposition}?", stems
    return f"How {verb} {subject_text} {participle.folded}?", stems


def _is_participle(word: str) -> bool:
    return word in lexicon.IRREGULAR_PARTICIPLES or (
        word.endswith("ed") and len(word) > 4 and word.isascii()
    )


def _topic(phrase: _Phrase, lowercase_words: frozenset[str]) -> str | None:
    """The phrase as the object of "What does the text say about ...?": its nouns, with "the"
    where the text had an article; None for what follows a copula ("was too small"), which
    describes a topic rather than names one ("there are three caches" does name one)."""
    before = [w for w in phrase.before if w not in lexicon.INTENSIFIERS]
    predicate = bool(before) and (before[-1] in lexicon.COPULAS or before[-1] in lexicon.NEGATORS)
    if predicate and before[-2:-1] != ["there"]:
        return None
    noun = _decapitalise(_noun_part(phrase.surface), lowercase_words)
    return f"the {noun}" if before and before[-1] in lexicon.DETERMINERS else noun


def _is_verb(word: str) -> bool:
    """A verb that ends a noun phrase ("council approved", "critics say"); a participle first
    in a phrase is an adjective ("cached answers") and is not asked about here."""
    return _is_participle(word) or word in lexicon.CLAUSE_VERBS


def _noun_part(phrase: str) -> str:
    """The phrase up to its first verb after the first word: "council approved" → "council"."""
    words = phrase.split(" ")
    end = next((i for i, w in enumerate(words[1:], start=1) if _is_verb(w.lower())), len(words))
    return " ".join(words[:end])


def _decapitalise(phrase: str, lowercase_words: frozenset[str]) -> str:
    """Lower-case a first word capitalised only because it opened a sentence ("The", "Caching")."""
    first, _, rest = phrase.partition(" ")
    lowered = first.lower()
    is_capitalised = first[:1].isupper() and first[1:] == first[1:].lower()
    if is_capitalised and (lowered in lowercase_words or lowered in lexicon.STOPWORDS):
        return lowered + (" " + rest if rest else "")
    return phrase


def _not_found() -> AnswerResult:
    return AnswerResult(answer=NOT_FOUND_ANSWER, confidence=0.0, evidence=None)
