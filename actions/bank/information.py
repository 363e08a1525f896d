"""Public information anyone may ask for, verified or not: branches, deposit and loan rates, exchange rates."""

from __future__ import annotations

from sqlalchemy import or_, select

from actions.bank.models import Branch, FxRate, Rate
from actions.bank.money import tidy_decimal
from actions.bank.normalise import CURRENCY_ALIASES, branch_search_terms
from actions.bank.store import BankStore
from actions.bank.views import BranchView, FxRateView, RateKind, RateView

MAX_BRANCHES = 20


class InformationService:
    """The bank's public information, on the shared store (read-only transactions only)."""

    def __init__(self, store: BankStore) -> None:
        self._store = store

    def branches(self, query: str, limit: int = 3) -> list[BranchView]:
        """Branches whose district, road or name matches the query ("朝阳", "朝阳区", "建国路"), best first."""
        limit = max(1, min(int(limit), MAX_BRANCHES))
        with self._store.transaction(read_only=True) as session:
            districts = list(session.scalars(select(Branch.district).distinct()))
            terms = branch_search_terms(query, districts)
            if not terms:
                return []
            matches = [
                or_(Branch.district.like(f"%{t}%"), Branch.address.like(f"%{t}%"), Branch.name.like(f"%{t}%"))
                for t in terms
            ]
            candidates = session.scalars(select(Branch).where(or_(*matches)).order_by(Branch.id)).all()
            ranked = sorted(candidates, key=lambda branch: -branch_score(branch, terms))
            return [BranchView(b.name, b.district, b.address, b.hours, b.phone) for b in ranked[:limit]]

    def rates(self, kind: RateKind) -> list[RateView]:
        """The published rates of one kind, in display order."""
        with self._store.transaction(read_only=True) as session:
            rates = session.scalars(select(Rate).where(Rate.kind == RateKind(kind)).order_by(Rate.position)).all()
            return [RateView(r.product, r.term, tidy_decimal(r.rate_percent)) for r in rates]

    def deposit_rates(self) -> list[RateView]:
        return self.rates(RateKind.DEPOSIT)

    def loan_rates(self) -> list[RateView]:
        return self.rates(RateKind.LOAN)

    def fx_rate(self, currency: str) -> FxRateView | None:
        """Today's rate for an ISO code ("USD") or its Chinese name ("美元", "美金"); None if not quoted."""
        if not isinstance(currency, str) or not currency.strip():
            return None
        spoken = currency.strip()[:16]
        code = CURRENCY_ALIASES.get(spoken, spoken.upper())
        with self._store.transaction(read_only=True) as session:
            rate = session.scalars(
                select(FxRate).where(or_(FxRate.currency == code, FxRate.name_zh == spoken))
            ).first()
            if rate is None:
                return None
            return FxRateView(rate.currency, rate.name_zh, tidy_decimal(rate.buy), tidy_decimal(rate.sell), rate.as_of)


def branch_score(branch: Branch, terms: list[str]) -> int:
    """How well a branch matches the search terms: roads and names weigh more than a district, which many share."""
    score = 0
    for term in terms:
        if term in branch.address or term in branch.name:
            score += 2
        if term in branch.district:
            score += 1
    return score
