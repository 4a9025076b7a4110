"""What delivery tells people, word for word (the SMS texts follow the courts' own)."""

from __future__ import annotations

from typing import Any

KIND_LABELS = {"effectiveness_certificate": "生效证明", "lawyer_binding": "律师绑定"}
LEVEL_LABELS = {"handler": "承办人", "division_head": "庭领导", "president": "院领导"}


def _kind(data: dict[str, Any]) -> str:
    return KIND_LABELS.get(data.get("kind", ""), "诉讼服务")


def submitted(data: dict[str, Any]) -> tuple[str, str, str]:
    title = f"新的{_kind(data)}申请待办理"
    body = (f"{data['case_number']}案当事人提交了{_kind(data)}申请"
            f"（服务号{data['service_number']}），请及时办理。")
    return title, body, f"【{data['court_name']}】您好！{body}"


def transferred(data: dict[str, Any]) -> tuple[str, str, str]:
    title = f"{_kind(data)}申请转后台法官办理"
    body = (f"{data['case_number']}案的{_kind(data)}申请（服务号{data['service_number']}）"
            "已转至您的网上待办，请及时办理。")
    return title, body, f"【{data['court_name']}】您好！{body}"


def completed(data: dict[str, Any]) -> tuple[str, str, str]:
    """The seed's text: 【…法院】您好！您提交的…号的材料法官已处理，请登录…查看处理结果。"""
    title = f"您的{_kind(data)}申请已办结"
    body = f"您提交的{data['case_number']}的材料法官已处理，请登录人民法院在线服务查看处理结果。"
    return title, body, f"【{data['court_name']}】您好！{body}"


def overdue(data: dict[str, Any]) -> tuple[str, str, str]:
    level = LEVEL_LABELS[data["level"]]
    title = f"催办提醒（{level}）：{data['service_number']}"
    body = (f"{data['case_number']}案的{_kind(data)}申请（服务号{data['service_number']}）"
            f"已超过办理期限{data['days_overdue']}天，请督促尽快办理。")
    return title, body, f"【{data['court_name']}】{body}"


CODE_PURPOSES = {"login": "登录", "reset_password": "重置密码",
                 "change_phone_old": "更换手机号码", "change_phone_new": "更换手机号码"}


def verification_code(purpose: str, code: str) -> str:
    label = CODE_PURPOSES.get(purpose, "身份")
    return f"【人民法院在线服务】您的{label}验证码为{code}，5分钟内有效，请勿泄露。"


def binding_requested(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "新的律师绑定申请待审核"
    body = (f"{data['lawyer_name']}律师申请代理{data['case_number']}案当事人{data['party_name']}"
            f"（服务号{data['service_number']}），请及时审核。")
    return title, body, f"【{data['court_name']}】您好！{body}"


def binding_approved_lawyer(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "案件绑定申请已通过"
    body = (f"您代理{data['case_number']}案当事人{data['party_name']}的绑定申请已通过，"
            "请登录人民法院在线服务查看案件。")
    return title, body, f"【{data['court_name']}】您好！{body}"


def binding_approved_party(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "您的案件有了代理律师"
    body = f"{data['lawyer_name']}律师已作为您在{data['case_number']}案中的代理人。"
    return title, body, f"【{data['court_name']}】您好！{body}"


def binding_rejected(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "案件绑定申请未通过"
    body = (f"您代理{data['case_number']}案当事人{data['party_name']}的绑定申请未通过，"
            f"原因：{data['reason']}。")
    return title, body, f"【{data['court_name']}】您好！{body}"
