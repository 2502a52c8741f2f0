//! Every word the review station shows, in Russian (the default) and English, chosen by the
//! browser's `Accept-Language`. One table: a new text is added to both languages at once.

use axum::http::HeaderMap;

/// The texts of one language.
pub struct Texts {
    /// `lang` of the page.
    pub lang: &'static str,
    pub title: &'static str,
    pub login_title: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    pub log_in: &'static str,
    pub log_out: &'static str,
    pub wrong_login: &'static str,
    pub too_many_logins: &'static str,
    pub queue: &'static str,
    pub queue_empty: &'static str,
    pub inbox: &'static str,
    pub name: &'static str,
    pub reasons: &'static str,
    pub waiting_since: &'static str,
    pub open: &'static str,
    pub scan: &'static str,
    pub cannot_show: &'static str,
    pub fields: &'static str,
    pub field: &'static str,
    pub value: &'static str,
    pub confidence: &'static str,
    pub below_min: &'static str,
    pub verification: &'static str,
    pub bad_fields: &'static str,
    pub biometrics: &'static str,
    pub liveness: &'static str,
    pub face_match: &'static str,
    pub passed: &'static str,
    pub not_passed: &'static str,
    pub approve: &'static str,
    pub approve_hint: &'static str,
    pub reject: &'static str,
    pub reject_reason: &'static str,
    pub back_to_queue: &'static str,
    pub already_decided: &'static str,
    pub approved: &'static str,
    pub rejected: &'static str,
    pub not_found: &'static str,
    pub forbidden: &'static str,
    pub bad_request: &'static str,
    pub reason_needed: &'static str,
    pub unknown_field: &'static str,
    pub not_ready: &'static str,
    pub move_failed: &'static str,
    pub signed_in_as: &'static str,
    pub document: &'static str,
}

pub static RU: Texts = Texts {
    lang: "ru",
    title: "Проверка сканов",
    login_title: "Вход",
    user: "Имя",
    password: "Пароль",
    log_in: "Войти",
    log_out: "Выйти",
    wrong_login: "Неверное имя или пароль.",
    too_many_logins: "Слишком много неудачных попыток входа. Подождите минуту и попробуйте снова.",
    queue: "Ожидают проверки",
    queue_empty: "Нечего проверять: папки проверки пусты.",
    inbox: "Папка",
    name: "Файл",
    reasons: "Почему нужна проверка",
    waiting_since: "Ожидает с",
    open: "Открыть",
    scan: "Скан",
    cannot_show: "Этот формат браузер показать не может; откройте файл в папке проверки.",
    fields: "Поля",
    field: "Поле",
    value: "Значение",
    confidence: "Уверенность",
    below_min: "ниже порога",
    verification: "Проверка паспорта",
    bad_fields: "Поля с ошибками",
    biometrics: "Биометрия",
    liveness: "Живой человек",
    face_match: "Совпадение лиц",
    passed: "пройдено",
    not_passed: "не пройдено",
    approve: "Утвердить",
    approve_hint: "Исправленные значения полей сохраняются в sidecar.",
    reject: "Отклонить",
    reject_reason: "Причина отказа",
    back_to_queue: "К списку",
    already_decided: "Решение по этому скану уже принято",
    approved: "утверждён",
    rejected: "отклонён",
    not_found: "Такого скана нет в папках проверки (его уже убрали или решили).",
    forbidden: "Форма устарела или пришла не с этой страницы. Откройте страницу заново.",
    bad_request: "Запрос не понят.",
    reason_needed: "Укажите причину отказа.",
    unknown_field: "В этом скане нет поля",
    not_ready: "Служба ещё запускается; обновите страницу через несколько секунд.",
    move_failed: "Файл не удалось переместить; ничего не изменено. Сообщите администратору:",
    signed_in_as: "Вы вошли как",
    document: "Документ",
};

pub static EN: Texts = Texts {
    lang: "en",
    title: "Scan review",
    login_title: "Log in",
    user: "Name",
    password: "Password",
    log_in: "Log in",
    log_out: "Log out",
    wrong_login: "Wrong name or password.",
    too_many_logins: "Too many failed logins. Wait a minute and try again.",
    queue: "Waiting for review",
    queue_empty: "Nothing to review: the review folders are empty.",
    inbox: "Inbox",
    name: "File",
    reasons: "Why it needs a person",
    waiting_since: "Waiting since",
    open: "Open",
    scan: "Scan",
    cannot_show: "The browser cannot show this format; open the file in the review folder.",
    fields: "Fields",
    field: "Field",
    value: "Value",
    confidence: "Confidence",
    below_min: "below the threshold",
    verification: "Passport verification",
    bad_fields: "Fields in error",
    biometrics: "Biometrics",
    liveness: "Live person",
    face_match: "Face match",
    passed: "passed",
    not_passed: "not passed",
    approve: "Approve",
    approve_hint: "Corrected field values are saved in the sidecar.",
    reject: "Reject",
    reject_reason: "Reason for rejecting",
    back_to_queue: "Back to the list",
    already_decided: "This scan has already been decided",
    approved: "approved",
    rejected: "rejected",
    not_found: "No such scan in the review folders (it was removed or decided).",
    forbidden: "This form is stale or did not come from this page. Open the page again.",
    bad_request: "The request was not understood.",
    reason_needed: "Give the reason for rejecting.",
    unknown_field: "This scan has no field",
    not_ready: "The service is still starting; reload the page in a few seconds.",
    move_failed: "The file could not be moved; nothing was changed. Tell the administrator:",
    signed_in_as: "Signed in as",
    document: "Document",
};

/// English when the browser's first language is English, else Russian.
pub fn for_request(headers: &HeaderMap) -> &'static Texts {
    let first = headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|tag| tag.trim().to_ascii_lowercase());
    match first {
        Some(tag) if tag == "en" || tag.starts_with("en-") => &EN,
        _ => &RU,
    }
}

impl Texts {
    /// "approved" / "rejected" in this language.
    pub fn decision(&self, decision: &str) -> &'static str {
        if decision == "rejected" {
            self.rejected
        } else {
            self.approved
        }
    }
}
