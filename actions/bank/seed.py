"""The deterministic sandbox data: customers, cards, accounts, transactions, statements, branches, rates, FX.

The first three customers are exactly the ones of issue 2; the others add an elderly woman, a second credit-card
holder, a lost card and two customers sharing the card ending 6666 (to exercise the caller-phone preference).
Transactions are dated relative to SEED_DATE, so every test sees the same history whatever day it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from actions.bank.models import (
    Account,
    Branch,
    Card,
    Customer,
    FxRate,
    Rate,
    Statement,
    Transaction,
)
from actions.bank.money import cents_from_yuan
from actions.bank.security import hash_pin
from actions.bank.views import CardKind, CardStatus, RateKind

SEED_DATE = date(2026, 11, 20)
BANK_CARD_BIN = "62220210"

# (days before SEED_DATE, "HH:MM", description, signed yuan amount), oldest first
TxnSpec = tuple[int, str, str, str]


@dataclass(frozen=True)
class StatementSpec:
    amount_due: str
    minimum_due: str
    statement_date: date
    due_date: date


@dataclass(frozen=True)
class CardSpec:
    last4: str
    kind: str  # a CardKind value
    balance: str  # debit: money held; credit: amount owed (positive)
    status: str = CardStatus.ACTIVE.value
    credit_limit: str = "0"
    statement: StatementSpec | None = None
    history: tuple[TxnSpec, ...] = ()


@dataclass(frozen=True)
class CustomerSpec:
    ref: str
    surname: str
    given_name: str
    gender: str
    born: date
    phone: str
    pin: str
    cards: tuple[CardSpec, ...] = field(default_factory=tuple)


CUSTOMERS: tuple[CustomerSpec, ...] = (
    CustomerSpec("C1001", "王", "建国", "M", date(1952, 3, 8), "13800000001", "135790", (
        CardSpec("1234", "debit", "52340.50", history=(
            (30, "09:12", "养老金入账", "4860.00"),
            (28, "10:05", "物美超市 消费", "-236.80"),
            (26, "15:40", "国家电网 电费", "-182.35"),
            (22, "08:55", "同仁堂药店 消费", "-128.00"),
            (19, "11:20", "ATM取现 朝阳门", "-1000.00"),
            (15, "09:30", "北京燃气 燃气费", "-96.00"),
            (12, "16:02", "中国移动 话费充值", "-50.00"),
            (8, "10:45", "北京自来水 水费", "-63.20"),
            (5, "14:10", "物美超市 消费", "-158.60"),
            (1, "00:30", "利息入账", "12.45"),
        )),
        CardSpec("8888", "credit", "3280.00", credit_limit="50000.00",
                 statement=StatementSpec("3280.00", "328.00", date(2026, 11, 15), date(2026, 12, 5)), history=(
            (40, "12:30", "全聚德 餐饮", "-486.00"),
            (36, "18:20", "国美电器 消费", "-899.00"),
            (31, "09:05", "中国石化 加油", "-350.00"),
            (27, "20:15", "京东商城 网购", "-1299.00"),
            (24, "17:40", "物美超市 消费", "-246.00"),
        )),
    )),
    CustomerSpec("C1002", "李", "秀英", "F", date(1963, 7, 15), "13800000002", "246802", (
        CardSpec("5678", "debit", "8000.00", history=(
            (29, "09:00", "退休金入账", "3650.00"),
            (27, "10:30", "华联超市 消费", "-212.40"),
            (24, "14:20", "国家电网 电费", "-98.50"),
            (21, "09:40", "社区卫生服务中心 医疗", "-45.00"),
            (18, "19:05", "微信转账", "-500.00"),
            (14, "08:50", "北京自来水 水费", "-38.40"),
            (11, "15:30", "中国联通 话费充值", "-30.00"),
            (7, "10:10", "京客隆超市 消费", "-126.70"),
            (4, "11:00", "ATM取现 西单", "-500.00"),
            (2, "16:45", "北京燃气 燃气费", "-80.00"),
        )),
    )),
    CustomerSpec("C1003", "陈", "晓明", "M", date(1990, 11, 2), "13900000003", "112233", (
        CardSpec("4321", "debit", "1200.00", history=(
            (26, "09:00", "工资入账", "9600.00"),
            (25, "10:15", "房租 转账", "-4500.00"),
            (23, "12:20", "美团外卖", "-42.50"),
            (21, "08:10", "北京地铁 充值", "-100.00"),
            (18, "21:30", "京东商城 网购", "-1299.00"),
            (16, "09:15", "星巴克 消费", "-38.00"),
            (13, "10:00", "信用卡还款 尾号9999", "-2150.00"),
            (9, "22:40", "滴滴出行", "-36.80"),
            (6, "11:25", "中国电信 宽带费", "-199.00"),
            (3, "19:50", "盒马鲜生 消费", "-86.70"),
        )),
        CardSpec("9999", "credit", "0.00", credit_limit="30000.00",
                 statement=StatementSpec("0.00", "0.00", date(2026, 11, 18), date(2026, 12, 8)), history=(
            (45, "19:30", "海底捞 餐饮", "-650.00"),
            (41, "10:20", "优衣库 消费", "-1500.00"),
            (13, "10:00", "还款 来自尾号4321", "2150.00"),
        )),
        CardSpec("7777", "credit", "0.00", status="inactive", credit_limit="20000.00"),
    )),
    CustomerSpec("C1004", "张", "桂兰", "F", date(1948, 5, 20), "13800000004", "864209", (
        CardSpec("2468", "debit", "15600.00", history=(
            (29, "09:05", "养老金入账", "4120.00"),
            (26, "10:40", "物美超市 消费", "-168.30"),
            (22, "09:20", "北京医院 医疗", "-326.00"),
            (19, "15:10", "国家电网 电费", "-76.80"),
            (16, "10:00", "ATM取现 东四", "-800.00"),
            (12, "09:45", "北京自来水 水费", "-29.60"),
            (9, "14:30", "稻香村 消费", "-88.00"),
            (6, "10:15", "北京燃气 燃气费", "-64.00"),
            (3, "16:20", "中国移动 话费充值", "-30.00"),
            (1, "00:30", "利息入账", "3.90"),
        )),
    )),
    CustomerSpec("C1005", "刘", "洋", "M", date(1985, 9, 12), "13700000005", "975310", (
        CardSpec("6666", "debit", "23456.78", history=(
            (27, "09:00", "工资入账", "15600.00"),
            (25, "20:10", "链家 房租", "-5200.00"),
            (22, "12:45", "美团外卖", "-56.30"),
            (20, "18:30", "中国石化 加油", "-320.00"),
            (17, "21:00", "淘宝 网购", "-432.10"),
            (14, "10:05", "车险 平安保险", "-3860.00"),
            (10, "19:20", "沃尔玛 消费", "-268.50"),
            (7, "09:30", "北京地铁 充值", "-100.00"),
            (4, "13:15", "瑞幸咖啡", "-19.90"),
            (2, "20:40", "电影票 猫眼", "-98.00"),
        )),
        CardSpec("3333", "credit", "1560.40", credit_limit="40000.00",
                 statement=StatementSpec("1560.40", "156.04", date(2026, 11, 20), date(2026, 12, 10)), history=(
            (38, "19:00", "西贝莜面村 餐饮", "-412.00"),
            (33, "14:30", "苹果商店 消费", "-648.00"),
            (29, "08:50", "航空 机票", "-500.40"),
        )),
    )),
    CustomerSpec("C1006", "赵", "敏", "F", date(1978, 1, 30), "13600000006", "468024", (
        CardSpec("6666", "debit", "3050.00", history=(
            (28, "09:00", "工资入账", "7200.00"),
            (26, "19:30", "永辉超市 消费", "-356.20"),
            (23, "10:00", "子女学费", "-3300.00"),
            (20, "12:10", "饿了么 外卖", "-38.60"),
            (17, "15:45", "国家电网 电费", "-142.00"),
            (13, "09:20", "北京公交 充值", "-50.00"),
            (10, "20:00", "唯品会 网购", "-215.00"),
            (7, "18:40", "屈臣氏 消费", "-89.90"),
            (4, "11:30", "中国联通 话费充值", "-100.00"),
            (1, "00:30", "利息入账", "1.70"),
        )),
        CardSpec("1111", "debit", "2400.00", status="lost"),
    )),
)

# (name, district, address, hours, phone)
BRANCHES: tuple[tuple[str, str, str, str, str], ...] = (
    ("光银银行北京建国路支行", "朝阳区", "北京市朝阳区建国路88号SOHO现代城1层", "周一至周日 9:00-17:00", "010-65088801"),
    ("光银银行北京望京支行", "朝阳区", "北京市朝阳区望京街10号望京SOHO塔1", "周一至周五 9:00-17:00", "010-64718802"),
    ("光银银行北京三里屯支行", "朝阳区", "北京市朝阳区工人体育场北路8号", "周一至周日 9:30-17:30", "010-65928803"),
    ("光银银行北京中关村支行", "海淀区", "北京市海淀区中关村大街27号", "周一至周日 9:00-17:00", "010-62568804"),
    ("光银银行北京五道口支行", "海淀区", "北京市海淀区成府路28号", "周一至周五 9:00-17:00", "010-62318805"),
    ("光银银行北京王府井支行", "东城区", "北京市东城区王府井大街138号", "周一至周日 9:00-17:00", "010-65128806"),
    ("光银银行北京东直门支行", "东城区", "北京市东城区东直门南大街5号", "周一至周五 9:00-17:00", "010-64168807"),
    ("光银银行北京金融街支行", "西城区", "北京市西城区金融大街15号", "周一至周五 9:00-17:00", "010-66228808"),
    ("光银银行北京西单支行", "西城区", "北京市西城区西单北大街120号", "周一至周日 9:00-17:30", "010-66028809"),
    ("光银银行北京丰台科技园支行", "丰台区", "北京市丰台区丰台北路32号", "周一至周五 9:00-17:00", "010-63818810"),
    ("光银银行北京方庄支行", "丰台区", "北京市丰台区方庄路9号", "周一至周日 9:00-17:00", "010-67618811"),
    ("光银银行北京通州新华大街支行", "通州区", "北京市通州区新华大街58号", "周一至周日 9:00-17:00", "010-69548812"),
    ("光银银行北京石景山支行", "石景山区", "北京市石景山区石景山路18号", "周一至周五 9:00-17:00", "010-68868813"),
    ("光银银行北京回龙观支行", "昌平区", "北京市昌平区回龙观西大街9号", "周一至周日 9:00-17:00", "010-81718814"),
)

# (kind, product, term, percent per year)
RATES: tuple[tuple[str, str, str, str], ...] = (
    ("deposit", "活期存款", "活期", "0.10"),
    ("deposit", "整存整取定期存款", "三个月", "0.80"),
    ("deposit", "整存整取定期存款", "六个月", "1.00"),
    ("deposit", "整存整取定期存款", "一年", "1.10"),
    ("deposit", "整存整取定期存款", "二年", "1.20"),
    ("deposit", "整存整取定期存款", "三年", "1.50"),
    ("deposit", "整存整取定期存款", "五年", "1.55"),
    ("deposit", "大额存单", "三年", "1.75"),
    ("loan", "贷款市场报价利率(LPR)", "一年期", "3.00"),
    ("loan", "贷款市场报价利率(LPR)", "五年期以上", "3.50"),
    ("loan", "个人住房贷款(首套)", "五年以上", "3.05"),
    ("loan", "个人消费贷款", "一年", "3.45"),
    ("loan", "个人经营贷款", "三年", "3.65"),
)

# (ISO code, Chinese name, buy, sell) in CNY per 100 units, as of SEED_DATE
FX_RATES: tuple[tuple[str, str, str, str], ...] = (
    ("USD", "美元", "711.20", "714.18"),
    ("EUR", "欧元", "820.35", "826.12"),
    ("JPY", "日元", "4.6012", "4.6350"),
    ("HKD", "港币", "91.20", "91.56"),
    ("GBP", "英镑", "932.40", "939.25"),
    ("AUD", "澳大利亚元", "462.30", "465.80"),
    ("CAD", "加拿大元", "507.10", "510.66"),
    ("SGD", "新加坡元", "545.02", "548.86"),
)


def seed_bank(session: Session, pin_iterations: int) -> None:
    """Insert the whole sandbox data set into an empty bank, in the caller's transaction."""
    for position, customer in enumerate(CUSTOMERS, start=1):
        _add_customer(session, customer, position, pin_iterations)
    session.add_all(Branch(name=n, district=d, address=a, hours=h, phone=p) for n, d, a, h, p in BRANCHES)
    session.add_all(
        Rate(kind=RateKind(kind).value, product=product, term=term, rate_percent=Decimal(percent), position=i)
        for i, (kind, product, term, percent) in enumerate(RATES)
    )
    session.add_all(
        FxRate(currency=code, name_zh=name, buy=Decimal(buy), sell=Decimal(sell), as_of=SEED_DATE)
        for code, name, buy, sell in FX_RATES
    )


def _add_customer(session: Session, spec: CustomerSpec, position: int, pin_iterations: int) -> None:
    customer = Customer(
        ref=spec.ref, surname=spec.surname, given_name=spec.given_name, gender=spec.gender,
        birth_date=spec.born, reserved_phone=spec.phone, pin_hash=hash_pin(spec.pin, pin_iterations),
    )
    session.add(customer)
    session.flush()
    for card_position, card_spec in enumerate(spec.cards, start=1):
        _add_card(session, customer, card_spec, serial=position * 10 + card_position)


def _add_card(session: Session, customer: Customer, spec: CardSpec, serial: int) -> None:
    balance = cents_from_yuan(spec.balance)
    kind = CardKind(spec.kind)
    account = Account(
        customer_id=customer.id,
        number=f"1100{serial:06d}{spec.last4}",
        kind=kind.value,
        balance_cents=balance if kind is CardKind.DEBIT else -balance,
        credit_limit_cents=cents_from_yuan(spec.credit_limit),
    )
    session.add(account)
    session.flush()
    card = Card(
        customer_id=customer.id, account_id=account.id, number=f"{BANK_CARD_BIN}{serial:04d}{spec.last4}",
        last4=spec.last4, kind=kind.value, status=CardStatus(spec.status).value,
    )
    session.add(card)
    session.flush()
    _add_history(session, account, spec.history)
    if spec.statement:
        session.add(Statement(
            card_id=card.id, statement_date=spec.statement.statement_date,
            amount_due_cents=cents_from_yuan(spec.statement.amount_due),
            minimum_due_cents=cents_from_yuan(spec.statement.minimum_due),
            due_date=spec.statement.due_date, paid_cents=0,
        ))


def _add_history(session: Session, account: Account, history: tuple[TxnSpec, ...]) -> None:
    """Past transactions, with running balances worked backwards from the account's current balance."""
    balance_after = account.balance_cents
    rows = []
    for days_before, hhmm, description, amount in reversed(history):
        amount_cents = cents_from_yuan(amount)
        posted_at = datetime.combine(SEED_DATE - timedelta(days=days_before), time.fromisoformat(hhmm))
        rows.append(Transaction(
            account_id=account.id, posted_at=posted_at, description=description,
            amount_cents=amount_cents, balance_after_cents=balance_after,
        ))
        balance_after -= amount_cents
    session.add_all(reversed(rows))
