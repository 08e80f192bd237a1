//! Tests of parsers that guard what reaches the node (node names, SSH
//! keys): a table of hostile inputs, one named test each, so the first
//! failure does not hide the rest.

/// `refused_inputs! { PARSE; name: INPUT => REASON; … }`: for each row, a
/// test that PARSE refuses INPUT as invalid (exit 3) with REASON in the
/// message, and that the message carries no raw control character.
macro_rules! refused_inputs {
    ($parse:expr; $($case:ident: $input:expr => $reason:expr;)*) => {$(
        #[test]
        fn $case() {
            let input: String = $input.into();
            let err = ($parse)(&input).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{err}");
            let text = err.to_string();
            assert!(text.contains($reason), "{text}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    )*};
}
