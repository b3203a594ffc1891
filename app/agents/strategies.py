"""The analysis and strategy agents: indicators in, a BUY/SELL/HOLD signal with reasons out."""

from __future__ import annotations

from dataclasses import dataclass

from app.agents.market_view import Indicators


@dataclass(frozen=True)
class Signal:
    decision: str  # BUY | SELL | HOLD
    confidence: float  # 0..1
    reasoning: str


def _signal(score: float, max_score: float, reasons: list[str], threshold: float) -> Signal:
    strength = min(1.0, abs(score) / max_score)
    if score >= threshold:
        decision = "BUY"
    elif score <= -threshold:
        decision = "SELL"
    else:
        decision = "HOLD"
    # A signal's confidence grows with agreement; a HOLD is as sure as the evidence is weak.
    confidence = 0.5 + 0.45 * strength if decision != "HOLD" else 0.5 + 0.4 * (1 - strength)
    reasoning = "\n".join(f"{i}. {reason}" for i, reason in enumerate(reasons, start=1))
    return Signal(decision, round(confidence, 4), reasoning)


class TechnicalAgent:
    """RSI(14), MACD(12,26,9), Bollinger(20,2) and the EMA 9/21 crossover, each voting +-1."""

    name = "technical-agent"
    type = "analysis"
    version = "1.0.0"

    def analyze(self, ind: Indicators) -> Signal:
        score = 0.0
        reasons = []
        if ind.rsi < 30:
            score += 1
            reasons.append(f"RSI at {ind.rsi:.1f} (oversold, below 30): bullish")
        elif ind.rsi > 70:
            score -= 1
            reasons.append(f"RSI at {ind.rsi:.1f} (overbought, above 70): bearish")
        else:
            reasons.append(f"RSI at {ind.rsi:.1f}: neutral")
        if ind.previous_histogram <= 0 < ind.macd_histogram:
            score += 1
            reasons.append(f"MACD bullish crossover (histogram {ind.macd_histogram:+.4f})")
        elif ind.previous_histogram >= 0 > ind.macd_histogram:
            score -= 1
            reasons.append(f"MACD bearish crossover (histogram {ind.macd_histogram:+.4f})")
        else:
            score += 0.5 if ind.macd_histogram > 0 else -0.5
            side = "above" if ind.macd_histogram > 0 else "below"
            reasons.append(f"MACD {side} its signal line (histogram {ind.macd_histogram:+.4f})")
        if ind.percent_b < 0:
            score += 1
            reasons.append(f"Price below the lower Bollinger band (%B {ind.percent_b:.2f})")
        elif ind.percent_b > 1:
            score -= 1
            reasons.append(f"Price above the upper Bollinger band (%B {ind.percent_b:.2f})")
        else:
            reasons.append(f"Price inside the Bollinger bands (%B {ind.percent_b:.2f})")
        spread = ind.ema9 - ind.ema21
        if ind.previous_ema_spread <= 0 < spread:
            score += 1
            reasons.append(f"EMA9 crossed above EMA21 ({ind.ema9:.2f} > {ind.ema21:.2f})")
        elif ind.previous_ema_spread >= 0 > spread:
            score -= 1
            reasons.append(f"EMA9 crossed below EMA21 ({ind.ema9:.2f} < {ind.ema21:.2f})")
        else:
            relation = "above" if spread > 0 else "below"
            reasons.append(f"EMA9 {relation} EMA21 ({ind.ema9:.2f} vs {ind.ema21:.2f})")
        return _signal(score, 4.0, reasons, threshold=1.5)


class TrendAgent:
    """EMA 9/21 direction, acted on only when ADX(14) says the trend is strong (>= 20)."""

    name = "trend-agent"
    type = "strategy"
    version = "1.0.0"
    adx_threshold = 20.0

    def analyze(self, ind: Indicators) -> Signal:
        spread = ind.ema9 - ind.ema21
        direction = "up" if spread > 0 else "down"
        crossed = (ind.previous_ema_spread <= 0 < spread) or (ind.previous_ema_spread >= 0 > spread)
        reasons = [
            f"EMA9 {ind.ema9:.2f} vs EMA21 {ind.ema21:.2f}: trend {direction}"
            + (" (fresh crossover)" if crossed else ""),
            f"ADX(14) at {ind.adx:.1f} (+DI {ind.plus_di:.1f}, -DI {ind.minus_di:.1f})",
        ]
        if ind.adx < self.adx_threshold:
            reasons.append(f"ADX below {self.adx_threshold:.0f}: no trend strong enough to follow")
            return _signal(0.0, 1.0, reasons, threshold=0.5)
        agrees = (spread > 0 and ind.plus_di > ind.minus_di) or (
            spread < 0 and ind.minus_di > ind.plus_di
        )
        if not agrees:
            reasons.append("Directional indicators disagree with the EMAs: standing aside")
            return _signal(0.0, 1.0, reasons, threshold=0.5)
        strength = min(1.0, (ind.adx - self.adx_threshold) / 30 + (0.3 if crossed else 0.0))
        reasons.append(f"Trend strong enough to follow {direction}")
        score = strength + 0.5 if spread > 0 else -(strength + 0.5)
        return _signal(score, 1.5, reasons, threshold=0.5)


STRATEGY_AGENTS = (TechnicalAgent(), TrendAgent())
