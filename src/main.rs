fn main() {
    comb_engine::sandbox::helper_main_if_requested();
}
