"""Texts to try on the Process page, each with a question for Q&A."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    text: str
    question: str


SAMPLES = {
    "Product review": Sample(
        text=(
            "I bought the Aurora desk lamp last month and I love it. The light is warm and even, "
            "and the touch dimmer works perfectly. Setup took two minutes. The only downside is "
            "the short cable, which barely reaches the socket behind my desk. Still, it is the "
            "best lamp I have owned and I would happily recommend it."
        ),
        question="What is the downside of the lamp?",
    ),
    "Support ticket": Sample(
        text=(
            "Our invoices for October were charged twice. The payment page froze after I "
            "clicked pay, so I clicked again, and now both charges appear on the card. This is "
            "frustrating and unacceptable for a paid plan. Please refund the duplicate charge "
            "of 49 euros and confirm by email. The account is registered to finance@example.com."
        ),
        question="How much should be refunded?",
    ),
    "Science news": Sample(
        text=(
            "Researchers have mapped the sleep of octopuses for the first time. The animals "
            "alternate between a quiet phase and a short active phase in which their skin "
            "flashes with colour patterns. The active phase repeats about once an hour and "
            "lasts less than a minute. The team thinks it resembles REM sleep in mammals, "
            "which suggests that complex sleep evolved more than once."
        ),
        question="How often does the active phase repeat?",
    ),
}
