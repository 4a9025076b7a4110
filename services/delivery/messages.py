"""What delivery tells people, word for word (the SMS texts follow the courts' own)."""

from __future__ import annotations

from typing import Any

SMS_SIGNATURE = "【人民法院在线服务】"

KIND_LABELS = {"effectiveness_certificate": "生效证明", "lawyer_binding": "律师绑定"}
LEVEL_LABELS = {"handler": "承办人", "division_head": "庭领导", "president": "院领导"}


def from_court(data: dict[str, Any], title: str, body: str) -> tuple[str, str, str]:
    """(inbox title, inbox body, SMS text): the SMS opens with the court's own name."""
    return title, body, f"【{data['court_name']}】您好！{body}"


def _kind(data: dict[str, Any]) -> str:
    return KIND_LABELS.get(data.get("kind", ""), "诉讼服务")


def submitted(data: dict[str, Any]) -> tuple[str, str, str]:
    title = f"新的{_kind(data)}申请待办理"
    body = (f"{data['case_number']}案当事人提交了{_kind(data)}申请"
            f"（服务号{data['service_number']}），请及时办理。")
    return from_court(data, title, body)


def transferred(data: dict[str, Any]) -> tuple[str, str, str]:
    title = f"{_kind(data)}申请转后台法官办理"
    body = (f"{data['case_number']}案的{_kind(data)}申请（服务号{data['service_number']}）"
            "已转至您的网上待办，请及时办理。")
    return from_court(data, title, body)


def completed(data: dict[str, Any]) -> tuple[str, str, str]:
    """The seed's text: 【…法院】您好！您提交的…号的材料法官已处理，请登录…查看处理结果。"""
    title = f"您的{_kind(data)}申请已办结"
    body = f"您提交的{data['case_number']}的材料法官已处理，请登录人民法院在线服务查看处理结果。"
    return from_court(data, title, body)


def overdue(data: dict[str, Any]) -> tuple[str, str, str]:
    level = LEVEL_LABELS[data["level"]]
    title = f"催办提醒（{level}）：{data['service_number']}"
    body = (f"{data['case_number']}案的{_kind(data)}申请（服务号{data['service_number']}）"
            f"已超过办理期限{data['days_overdue']}天，请督促尽快办理。")
    return title, body, f"【{data['court_name']}】{body}"


CODE_TEXTS = {
    "login": "您的登录验证码为{code}，5分钟内有效，请勿泄露。",
    "reset_password": "您正在重置密码，验证码为{code}，5分钟内有效，请勿泄露。"
                      "如非本人操作，请忽略本短信。",
    "change_phone_old": "您正在更换绑定手机号，验证码为{code}，5分钟内有效，请勿泄露。"
                        "如非本人操作，请尽快修改密码。",
    "change_phone_new": "您正在将本号码绑定为登录手机号，验证码为{code}，5分钟内有效，请勿泄露。",
}


def verification_code(purpose: str, code: str) -> str:
    text = CODE_TEXTS.get(purpose, "您的验证码为{code}，5分钟内有效，请勿泄露。")
    return SMS_SIGNATURE + text.format(code=code)


def binding_requested(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "新的律师绑定申请待审核"
    body = (f"{data['lawyer_name']}律师申请代理{data['case_number']}案当事人{data['party_name']}"
            f"（服务号{data['service_number']}），请及时审核。")
    return from_court(data, title, body)


def binding_approved_lawyer(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "案件绑定申请已通过"
    body = (f"您代理{data['case_number']}案当事人{data['party_name']}的绑定申请已通过，"
            "请登录人民法院在线服务查看案件。")
    return from_court(data, title, body)


def binding_approved_party(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "您的案件有了代理律师"
    body = f"{data['lawyer_name']}律师已作为您在{data['case_number']}案中的代理人。"
    return from_court(data, title, body)


def binding_rejected(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "案件绑定申请未通过"
    body = (f"您代理{data['case_number']}案当事人{data['party_name']}的绑定申请未通过，"
            f"原因：{data['reason']}。")
    return from_court(data, title, body)


def organization_registered(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "新的法人注册申请待审核"
    deadline = str(data.get("review_deadline", ""))[:10]
    body = f"{data['name']}提交了法人注册申请，请于{deadline}前登录审核。"
    if data.get("uscc_check_failed"):
        body += "统一社会信用代码校验未通过，请重点核对。"
    return from_court(data, title, body)


def organization_approved(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "法人注册审核通过"
    body = (f"您提交的{data['name']}法人注册申请已审核通过，"
            "请使用统一社会信用代码和密码登录人民法院在线服务。")
    return from_court(data, title, body)


def organization_rejected(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "法人注册审核未通过"
    body = (f"您提交的{data['name']}法人注册申请未通过审核，原因：{data['reason']}。"
            "请登录人民法院在线服务查看。")
    return from_court(data, title, body)


def lawyer_verified(_data: dict[str, Any]) -> tuple[str, str, str]:
    body = "您的律师身份认证已通过，请重新登录后使用律师服务。"
    return "律师认证成功", body, f"{SMS_SIGNATURE}您好！{body}"


def lawyer_rejected(data: dict[str, Any]) -> tuple[str, str, str]:
    body = f"您提交的律师身份认证未通过，原因：{data['reason']}。"
    return "律师认证未通过", body, f"{SMS_SIGNATURE}您好！{body}"


def lawyer_verification_requested(data: dict[str, Any]) -> tuple[str, str, str]:
    title = "新的律师线下认证待审核"
    body = (f"{data['name']}（{data['law_firm']}）申请律师线下认证，"
            "请核验执业证和身份证原件后登录审核。")
    return title, body, f"{SMS_SIGNATURE}您好！{body}"
