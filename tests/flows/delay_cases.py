"""Supplier messages with the delay notice fields a reader would extract from them.

The table is shared by the rule parser's tests and by the accuracy measurement
(`uv run python -m scripts.evaluate_extraction`). All cases use `TODAY` to fill
in years that the messages omit.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from flows.tasks.extraction import DelayNotice

TODAY = datetime.date(2024, 12, 1)

FIELDS = (
    "is_delay",
    "materials",
    "delay_days",
    "reason",
    "supplier",
    "original_date",
    "new_date",
    "not_delay_reason",
)


@dataclass(frozen=True)
class DelayCase:
    """A message and its expected fields. `known_gap` explains an expected miss."""

    text: str
    is_delay: bool = True
    materials: list[str] = field(default_factory=list)
    delay_days: int | None = None
    reason: str | None = None
    supplier: str | None = None
    original_date: datetime.date | None = None
    new_date: datetime.date | None = None
    not_delay_reason: str | None = None
    known_gap: str | None = None


def _date(month: int, day: int, year: int = 2024) -> datetime.date:
    return datetime.date(year, month, day)


DELAY_CASES = [
    DelayCase(
        "受台风影响,A03-205芯片推迟3天发货",
        materials=["A03-205"], delay_days=3, reason="台风",
    ),
    DelayCase(
        " 受台风影响,A03-205芯片推迟3天发货",
        materials=["A03-205"], delay_days=3, reason="台风",
    ),
    DelayCase("A03-205芯片推迟3天发货\n  ", materials=["A03-205"], delay_days=3),
    DelayCase(
        "part X-12 delayed by 2 days due to port congestion",
        materials=["X-12"], delay_days=2, reason="port congestion",
    ),
    DelayCase(
        "原定12月10日发货,推迟至12月15日",
        delay_days=5, original_date=_date(12, 10), new_date=_date(12, 15),
    ),
    DelayCase(
        "X-12 originally due Dec 10, now Dec 15",
        materials=["X-12"], delay_days=5,
        original_date=_date(12, 10), new_date=_date(12, 15),
    ),
    DelayCase(
        "PCB-7788 shipment moved from 2024-12-10 to 2024-12-20",
        materials=["PCB-7788"], delay_days=10,
        original_date=_date(12, 10), new_date=_date(12, 20),
    ),
    DelayCase(
        "XX电子通知:由于原材料短缺,MAT001、MAT002延期两周",
        materials=["MAT001", "MAT002"], delay_days=14,
        reason="原材料短缺", supplier="XX电子",
    ),
    DelayCase(
        "Supplier: Acme Corp. Part X-12 will be 48 hours late.",
        materials=["X-12"], delay_days=2, supplier="Acme Corp",
    ),
    DelayCase(
        "From Acme Corp: PCB-7788 delayed by 36 hours because of a customs "
        "inspection.",
        materials=["PCB-7788"], delay_days=2,
        reason="customs inspection", supplier="Acme Corp",
    ),
    DelayCase(
        "【华强电子】B11-300推迟二十三天,原因是海关查验",
        materials=["B11-300"], delay_days=23, reason="海关查验", supplier="华强电子",
    ),
    DelayCase("A03-205延期一个半月", materials=["A03-205"], delay_days=45),
    DelayCase(
        "受疫情影响,C22-001延迟半个月交货",
        materials=["C22-001"], delay_days=15, reason="疫情",
    ),
    DelayCase(
        "Dec 10 shipment of X-12 delayed 5 days",
        materials=["X-12"], delay_days=5,
        original_date=_date(12, 10), new_date=_date(12, 15),
    ),
    DelayCase(
        "原定12月28日的A03-205推迟到1月5日",
        materials=["A03-205"], delay_days=8,
        original_date=_date(12, 28), new_date=_date(1, 5, 2025),
    ),
    DelayCase(
        "原定12月10日,推迟至15日",
        delay_days=5, original_date=_date(12, 10), new_date=_date(12, 15),
    ),
    DelayCase("订单PO-2024-118的A03-205推迟3-5天", materials=["A03-205"], delay_days=5),
    DelayCase(
        "因设备检修,PCB-7788、X-12和MAT001将延后十五天发货",
        materials=["PCB-7788", "X-12", "MAT001"], delay_days=15, reason="设备检修",
    ),
    DelayCase(
        "由于台风影响导致港口关闭,A03-205延迟两天",
        materials=["A03-205"], delay_days=2, reason="台风",
    ),
    DelayCase("A03-205推迟一周交货", materials=["A03-205"], delay_days=7),
    DelayCase("B11-300需延期2个月", materials=["B11-300"], delay_days=60),
    DelayCase("MAT001预计晚到十天", materials=["MAT001"], delay_days=10),
    DelayCase(
        "Heads up: shipment of PCB-7788 slipped by a week because of a shortage "
        "of copper foil.",
        materials=["PCB-7788"], delay_days=7, reason="shortage of copper foil",
    ),
    DelayCase(
        "Due to the typhoon, X-12 and Y-34 will ship 3 days late.",
        materials=["X-12", "Y-34"], delay_days=3, reason="typhoon",
    ),
    DelayCase(
        "Acme Electronics informed us that part A7-100 is postponed to "
        "2024-12-20 (original date 2024-12-12).",
        materials=["A7-100"], delay_days=8, supplier="Acme Electronics",
        original_date=_date(12, 12), new_date=_date(12, 20),
    ),
    DelayCase(
        "ETA for X-12 pushed back to Dec 20, originally Dec 13.",
        materials=["X-12"], delay_days=7,
        original_date=_date(12, 13), new_date=_date(12, 20),
    ),
    DelayCase(
        "A03-205原计划2024年12月5日发货,现调整为2024年12月12日",
        materials=["A03-205"], delay_days=7,
        original_date=_date(12, 5), new_date=_date(12, 12),
    ),
    DelayCase(
        "由于客户插单,A03-205推迟1.5周",
        materials=["A03-205"], delay_days=11, reason="客户插单",
    ),
    DelayCase("X-12 delayed by 72 hours", materials=["X-12"], delay_days=3),
    DelayCase(
        "MAT001 will be delayed two weeks due to a quality issue",
        materials=["MAT001"], delay_days=14, reason="quality issue",
    ),
    DelayCase("PCB-7788延迟24小时出货", materials=["PCB-7788"], delay_days=1),
    DelayCase("C22-001交期原为30天,现推迟5天", materials=["C22-001"], delay_days=5),
    DelayCase(
        "Vendor: Shenzhen Kaida Metals. Order for SH-2201 slips 10 days, "
        "new ETA 12/20.",
        materials=["SH-2201"], delay_days=10, supplier="Shenzhen Kaida Metals",
        original_date=_date(12, 10), new_date=_date(12, 20),
    ),
    DelayCase(
        "A03-205、B11-300因缺料延期,具体时间待定",
        materials=["A03-205", "B11-300"], reason="缺料",
    ),
    DelayCase(
        "三星电子反馈:K4A8G-165推迟二十天",
        materials=["K4A8G-165"], delay_days=20, supplier="三星电子",
    ),
    DelayCase(
        "X-12 won't ship on time, expect a 2-week delay",
        materials=["X-12"], delay_days=14,
    ),
    DelayCase("A03-205无法按时发货,预计延误4天", materials=["A03-205"], delay_days=4),
    DelayCase(
        "FYI: X-12 rescheduled for Dec 18 (was Dec 11).",
        materials=["X-12"], delay_days=7,
        original_date=_date(12, 11), new_date=_date(12, 18),
    ),
    DelayCase(
        "受到春节放假影响,MAT-3301延期到2025年2月10日发货",
        materials=["MAT-3301"], reason="春节放假", new_date=_date(2, 10, 2025),
    ),
    DelayCase(
        "Acme Corp reports that PCB-7788 is delayed by one month due to strikes "
        "at the port",
        materials=["PCB-7788"], delay_days=30,
        reason="strikes at the port", supplier="Acme Corp",
    ),
    DelayCase("推迟两个星期:A03-205", materials=["A03-205"], delay_days=14),
    DelayCase(
        "供应商:宏达精密。X-12 因模具维修不得不推迟十天",
        materials=["X-12"], delay_days=10, reason="模具维修", supplier="宏达精密",
    ),
]  # fmt: skip

NOT_DELAY_CASES = [
    DelayCase(
        "A03-205会延期吗?",
        is_delay=False, materials=["A03-205"], not_delay_reason="question",
    ),
    DelayCase(
        "A03-205按时发货",
        is_delay=False, materials=["A03-205"], not_delay_reason="on_schedule",
    ),
    DelayCase("延期取消,恢复原计划", is_delay=False, not_delay_reason="delay_lifted"),
    DelayCase(
        "Will X-12 be delayed?",
        is_delay=False, materials=["X-12"], not_delay_reason="question",
    ),
    DelayCase(
        "Sorry for the late reply, X-12 shipped on schedule.",
        is_delay=False, materials=["X-12"], not_delay_reason="on_schedule",
    ),
    DelayCase(
        "A03-205不会延期,按时发货",
        is_delay=False, materials=["A03-205"], not_delay_reason="on_schedule",
    ),
    DelayCase(
        "Good news: the delay on PCB-7788 has been cancelled, back on schedule.",
        is_delay=False, materials=["PCB-7788"], not_delay_reason="delay_lifted",
    ),
    DelayCase("下周三开会讨论Q1采购计划", is_delay=False, not_delay_reason="unrelated"),
    DelayCase(
        "X-12 has been shipped today, tracking number follows.",
        is_delay=False, materials=["X-12"], not_delay_reason="on_schedule",
    ),
    DelayCase(
        "之前通知的B11-300延期取消,恢复原定12月10日发货",
        is_delay=False, materials=["B11-300"], not_delay_reason="delay_lifted",
    ),
    DelayCase(
        "请问MAT001什么时候发货?",
        is_delay=False, materials=["MAT001"], not_delay_reason="question",
    ),
    DelayCase(
        "Thanks, received the invoice INV-2024-0098.",
        is_delay=False, not_delay_reason="unrelated",
    ),
    DelayCase(
        "Is PCB-7788 still on track for Dec 10?",
        is_delay=False, materials=["PCB-7788"], not_delay_reason="question",
    ),
]  # fmt: skip

# Messages the rule parser is known to get wrong. They count in the accuracy.
KNOWN_GAP_CASES = [
    DelayCase(
        "A03-205推迟到明天发货",
        materials=["A03-205"], new_date=_date(12, 2),
        known_gap="relative dates (明天, next Monday) are not resolved",
    ),
    DelayCase(
        "铜箔推迟一周到货",
        materials=["铜箔"], delay_days=7,
        known_gap="materials without a part number are not found",
    ),
    DelayCase(
        "Shipment slips 10 days for part 4417-B",
        materials=["4417-B"], delay_days=10,
        known_gap="part numbers that start with a digit are not found",
    ),
    DelayCase(
        "Delivery of X-12 moves from 10/12 to 15/12",
        materials=["X-12"], delay_days=5,
        original_date=_date(12, 10), new_date=_date(12, 15),
        known_gap="numeric dates are read as month/day, not day/month",
    ),
]  # fmt: skip

# Written after the parser was tuned on the cases above and added without changing
# the parser, so their accuracy is closer to that on unseen messages.
UNSEEN_CASES = [
    DelayCase(
        "通知:由于芯片缺货,型号U3-0402的电源模块将延迟3周交付",
        materials=["U3-0402"], delay_days=21, reason="芯片缺货",
    ),
    DelayCase(
        "Hi team, the PCB-7788 order will be pushed out by 5 working days due to "
        "a power outage at our plant.",
        materials=["PCB-7788"], delay_days=5, reason="power outage at our plant",
    ),
    DelayCase("MAT001 延期 10 天", materials=["MAT001"], delay_days=10),
    DelayCase(
        "我司(鼎盛科技)A03-205交货期从12月3日改到12月9日",
        materials=["A03-205"], delay_days=6, supplier="鼎盛科技",
        original_date=_date(12, 3), new_date=_date(12, 9),
        known_gap="a supplier named only in brackets after 我司 is not found",
    ),
    DelayCase(
        "Unfortunately X-12 cannot ship on time; new ship date is Dec 22.",
        materials=["X-12"], new_date=_date(12, 22),
    ),
    DelayCase(
        "因物流原因,B11-300、B11-301晚发两天",
        materials=["B11-300", "B11-301"], delay_days=2, reason="物流",
    ),
    DelayCase(
        "A03-205已按时发出",
        is_delay=False, materials=["A03-205"], not_delay_reason="on_schedule",
    ),
    DelayCase(
        "PCB-7788的延期问题已经解决,按原计划12月10日出货",
        is_delay=False, materials=["PCB-7788"], not_delay_reason="delay_lifted",
    ),
    DelayCase(
        "Could you confirm whether X-12 ships this week?",
        is_delay=False, materials=["X-12"], not_delay_reason="question",
    ),
    DelayCase(
        "X-12 is running about a week behind schedule",
        materials=["X-12"], delay_days=7,
    ),
]  # fmt: skip

ALL_CASES = DELAY_CASES + NOT_DELAY_CASES + KNOWN_GAP_CASES + UNSEEN_CASES


def measure_field_accuracy(
    parse: Callable[[str], DelayNotice], cases: list[DelayCase] = ALL_CASES
) -> dict[str, float]:
    """Return the share of cases in which `parse` gets each field right.

    The key "overall" contains the share over all fields of all cases.
    """
    correct = dict.fromkeys(FIELDS, 0)
    for case in cases:
        notice = parse(case.text)
        for name in FIELDS:
            correct[name] += getattr(notice, name) == getattr(case, name)
    accuracy = {name: count / len(cases) for name, count in correct.items()}
    accuracy["overall"] = sum(correct.values()) / (len(cases) * len(FIELDS))
    return accuracy
